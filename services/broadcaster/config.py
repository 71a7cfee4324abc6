"""Typed configuration of the broadcaster service."""

from __future__ import annotations

from pydantic import PositiveFloat

from edgesplit.rpc.config import ServiceConfig, WireDtype, opt


class BroadcasterConfig(ServiceConfig):
    """Broadcaster (RB): signed two-phase rollout and the shard registry."""

    state_dir: str = opt("var/broadcaster", "rollout state and (by default) keys and registry")
    signing_key: str = opt("", "PEM Ed25519 key that signs assignments (default: a dev key "
                               "created under STATE_DIR/keys as control.ed25519.pem)")
    shard_dir: str = opt("", "shard directory (`edgesplit model shard` output) to import into "
                             "the registry at start (empty: serve what the registry holds)")
    registry_dir: str = opt("", "encrypted shard store (default: STATE_DIR/registry)")
    inventory: str = opt("", "YAML/JSON inventory (the monitor's schema): each node's address, "
                             "trust, trusted_by and agreement_public_key (base64 X25519), and "
                             "privacy_depth; re-read when it changes. Apply carries only the "
                             "plan: nodes not listed here are refused")
    max_epoch_step: int = opt(1000, "an Apply's epoch may be at most this far above the last "
                                    "tried one (a huge jump would spend the epoch space)", ge=1)
    prepare_timeout_s: PositiveFloat = opt(60.0, "default seconds a node may take to Prepare "
                                                 "(fetching and loading shards) before the "
                                                 "rollout aborts")
    commit_attempts: int = opt(4, "tries of an idempotent call to a node (Prepare, Commit, "
                                  "Abort) on UNAVAILABLE", ge=1, le=5)
    assignment_ttl_s: PositiveFloat = opt(600.0, "assignments expire this long after signing")
    wire_dtype: WireDtype = opt("float32", "default activation dtype on the wire")
    fetch_chunk_bytes: int = opt(1 << 20, "FetchShard chunk size in bytes", ge=1024)
