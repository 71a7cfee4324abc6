"""Typed configuration of the broadcaster service."""

from __future__ import annotations

from pydantic import Field

from edgesplit.rpc.config import CommaList, ServiceConfig, WireDtype


class BroadcasterConfig(ServiceConfig):
    """Broadcaster (RB): signed two-phase rollout and the shard registry."""

    state_dir: str = Field("var/broadcaster", description="rollout state and (by default) "
                                                          "keys and registry")
    signing_key: str = Field("", description="PEM Ed25519 key that signs assignments "
                                             "(default: a dev key created under "
                                             "STATE_DIR/keys as control.ed25519.pem)")
    shard_dir: str = Field("", description="shard directory (`edgesplit model shard` output) "
                                           "to import into the registry at start (empty: "
                                           "serve what the registry holds)")
    registry_dir: str = Field("", description="encrypted shard store "
                                              "(default: STATE_DIR/registry)")
    nodes: str = Field("", description="YAML/JSON file mapping node id -> host:port "
                                       "(Apply may add more)")
    prepare_timeout_s: float = Field(60.0, gt=0, description="default seconds a node may take "
                                                             "to Prepare (fetching and loading "
                                                             "shards) before the rollout aborts")
    commit_attempts: int = Field(4, ge=1, le=5, description="tries per call to a node on "
                                                            "UNAVAILABLE, for its idempotent "
                                                            "calls (Prepare, Commit, Abort)")
    assignment_ttl_s: float = Field(600.0, gt=0, description="assignments expire this long "
                                                             "after signing")
    trusted_nodes: CommaList = Field((), description="default nodes trusted with sensitive "
                                                     "layers (comma-separated)")
    privacy_depth: int = Field(1, ge=0, description="default number of first decoder layers "
                                                    "that are sensitive")
    wire_dtype: WireDtype = Field("float32", description="default activation dtype on the wire")
    fetch_chunk_bytes: int = Field(1 << 20, ge=1024, description="FetchShard chunk size in "
                                                                 "bytes")
