"""Typed configuration of a node agent."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from edgesplit.rpc.config import ServiceConfig


class NodeAgentConfig(ServiceConfig):
    """Node agent: runs assigned model segments and forwards encrypted frames."""

    node_id: str = Field("node-0", min_length=1, description="this node's id (assignments for "
                                                             "other ids are refused)")
    state_dir: str = Field("var/node", description="keys and cached shards live here")
    shard_dir: str = Field("", description="directory of model shards (`edgesplit model shard` "
                                           "output)")
    control_public_key: str = Field("", description="PEM Ed25519 public key(s) of the control "
                                                    "plane, comma-separated; assignments must "
                                                    "be signed by one")
    device: str = Field("cpu", pattern=r"^(cpu|cuda(:\d+)?|mps)$",
                        description="torch device for segments: cpu, cuda, cuda:N")
    dtype: Literal["", "float32", "float16", "bfloat16"] = Field(
        "", description="compute dtype (empty: the model's; float32 on cpu)")
    torch_threads: int = Field(0, ge=0, description="torch intra-op threads (0: torch's "
                                                    "default)")
    session_idle_timeout_s: float = Field(300.0, gt=0, description="drop a session's KV cache "
                                                                   "after this idle time")
    step_timeout_s: float = Field(30.0, gt=0, description="entry: give up on a ring step after "
                                                          "this long")
    max_sessions: int = Field(64, ge=1, description="entry: concurrent Generate calls before "
                                                    "RESOURCE_EXHAUSTED")
    max_new_tokens: int = Field(4096, ge=1, description="upper bound a request may ask for")
    frame_chunk_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="split frames larger "
                                                                         "than this into chunks")
    retained_epochs: int = Field(2, ge=0, description="older committed epochs kept so their "
                                                      "sessions drain")
    testbed_admin: bool = Field(False, description="serve TestbedAdmin (emulated compute/link "
                                                   "conditions)")
    monitor: str = Field("", description="monitor address host:port to push reports to "
                                         "(empty: off)")
    orchestrator: str = Field("", description="orchestrator address: asked for a private route "
                                              "when a privacy=high request finds none")
    broadcaster: str = Field("", description="broadcaster address host:port to fetch shards "
                                             "from")
    utilization_scope: Literal["machine", "process"] = Field(
        "machine", description="utilisation reported: 'machine' (one agent per host) or "
                               "'process' (test bed: agents share a host)")
    report_interval_s: float = Field(1.0, gt=0, description="seconds between reports to the "
                                                            "monitor")
    # Link probes (services/node_agent/reporter.py): bounded, and only for idle links.
    probe_bytes: int = Field(64 * 1024, ge=0, description="bulk link probe payload for "
                                                          "bandwidth (0: no bulk probes); sent "
                                                          "when a link's frames gave no figure "
                                                          "lately")
    bandwidth_probe_cycles: int = Field(10, ge=1, description="report cycles without a "
                                                              "bandwidth sample before a link "
                                                              "gets a bulk probe")
    probe_max_bytes: int = Field(1024 * 1024, ge=0, description="largest probe payload this "
                                                                "node answers")
