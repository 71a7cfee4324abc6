"""Typed configuration of the broadcaster service."""

from __future__ import annotations

from pydantic import NonNegativeInt, PositiveFloat

from edgesplit.rpc.config import CommaList, ServiceConfig, WireDtype, opt


class BroadcasterConfig(ServiceConfig):
    """Broadcaster (RB): signed two-phase rollout and the shard registry."""

    state_dir: str = opt("var/broadcaster", "rollout state and (by default) keys and registry")
    signing_key: str = opt("", "PEM Ed25519 key that signs assignments (default: a dev key "
                               "created under STATE_DIR/keys as control.ed25519.pem)")
    shard_dir: str = opt("", "shard directory (`edgesplit model shard` output) to import into "
                             "the registry at start (empty: serve what the registry holds)")
    registry_dir: str = opt("", "encrypted shard store (default: STATE_DIR/registry)")
    nodes: str = opt("", "YAML/JSON file mapping node id -> host:port (Apply may add more)")
    prepare_timeout_s: PositiveFloat = opt(60.0, "default seconds a node may take to Prepare "
                                                 "(fetching and loading shards) before the "
                                                 "rollout aborts")
    commit_attempts: int = opt(4, "tries of an idempotent call to a node (Prepare, Commit, "
                                  "Abort) on UNAVAILABLE", ge=1, le=5)
    assignment_ttl_s: PositiveFloat = opt(600.0, "assignments expire this long after signing")
    trusted_nodes: CommaList = opt((), "default nodes trusted with sensitive layers "
                                       "(comma-separated)")
    privacy_depth: NonNegativeInt = opt(1, "default number of first decoder layers that are "
                                           "sensitive")
    wire_dtype: WireDtype = opt("float32", "default activation dtype on the wire")
    fetch_chunk_bytes: int = opt(1 << 20, "FetchShard chunk size in bytes", ge=1024)
