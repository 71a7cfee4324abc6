"""Typed configuration of a node agent."""

from __future__ import annotations

from typing import Literal

from pydantic import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt

from edgesplit.rpc.config import ServiceConfig, opt


class NodeAgentConfig(ServiceConfig):
    """Node agent: runs assigned model segments and forwards encrypted frames."""

    node_id: str = opt("node-0", "this node's id (assignments for other ids are refused)",
                       min_length=1)
    state_dir: str = opt("var/node", "keys and cached shards live here")
    shard_dir: str = opt("", "directory of model shards (`edgesplit model shard` output)")
    control_public_key: str = opt("", "PEM Ed25519 public key(s) of the control plane, "
                                      "comma-separated; assignments must be signed by one")
    device: str = opt("cpu", "torch device for segments: cpu, cuda, cuda:N",
                      pattern=r"^(cpu|cuda(:\d+)?|mps)$")
    dtype: Literal["", "float32", "float16", "bfloat16"] = opt(
        "", "compute dtype (empty: the model's; float32 on cpu)")
    torch_threads: NonNegativeInt = opt(0, "torch intra-op threads (0: torch's default)")
    session_idle_timeout_s: PositiveFloat = opt(300.0, "drop a session's KV cache after this "
                                                       "idle time")
    step_timeout_s: PositiveFloat = opt(30.0, "entry: give up on a ring step after this long")
    max_sessions: PositiveInt = opt(64, "entry: concurrent Generate calls; more wait in "
                                        "the admission queue")
    max_waiting: NonNegativeInt = opt(64, "entry: Generate calls waiting for a session slot "
                                          "(earliest deadline first) before "
                                          "RESOURCE_EXHAUSTED with a retry-after hint")
    max_queue_wait_s: PositiveFloat = opt(10.0, "entry: longest wait for a session slot "
                                                "before RESOURCE_EXHAUSTED")
    sla_step_s: PositiveFloat = opt(0.15, "entry: decode-step target; a new session takes "
                                          "the route (replica) with the most headroom to it")
    max_new_tokens: PositiveInt = opt(4096, "upper bound a request may ask for")
    max_prompt_bytes: PositiveInt = opt(256 * 1024, "entry: UTF-8 bytes of prompt text, "
                                                    "checked before tokenising (INVALID_ARGUMENT "
                                                    "beyond)")
    max_prompt_tokens: PositiveInt = opt(32768, "entry: length of a pre-tokenised prompt")
    min_temperature: PositiveFloat = opt(0.01, "entry: lowest non-zero sampling temperature (0 "
                                               "is greedy; 0 < t below this is INVALID_ARGUMENT)")
    max_sessions_per_client: PositiveInt = opt(32, "entry: concurrent Generate calls of one "
                                                   "client identity (or, without a "
                                                   "certificate, one address) before "
                                                   "RESOURCE_EXHAUSTED; the gateway, which "
                                                   "keeps per-key quotas itself, is exempt")
    stream_ahead: NonNegativeInt = opt(2, "entry: tokens generated ahead of the client's "
                                          "stream (0: each reply is written first)")
    batch_max_sessions: PositiveInt = opt(32, "continuous batching: session steps run "
                                              "together in one batch at most")
    batch_max_tokens: PositiveInt = opt(512, "continuous batching: tokens in one batch at "
                                             "most (decode steps plus prefill chunks)")
    prefill_chunk_tokens: PositiveInt = opt(128, "continuous batching: prompt tokens of one "
                                                 "session per batch, so a long prompt does not "
                                                 "stall the sessions decoding")
    kv_budget_mb: NonNegativeFloat = opt(0.0, "KV cache memory this node may hold across "
                                              "its segments, MiB (0: no budget); a step that "
                                              "cannot fit is refused RESOURCE_EXHAUSTED")
    ring_waves: NonNegativeInt = opt(0, "entry: groups of sessions kept travelling a route's "
                                        "ring at once; a step ready while that many are out "
                                        "waits (a round trip at most) to join the next one "
                                        "back (0: the route's number of nodes)")
    frame_chunk_bytes: int = opt(4 * 1024 * 1024, "split frames larger than this into chunks",
                                 ge=1024)
    link_window: PositiveInt = opt(64, "link stream: messages sent to a peer and not yet "
                                       "acked before the sender waits (flow control)")
    link_stream_lifetime_s: PositiveFloat = opt(600.0, "link stream deadline; a fresh stream "
                                                       "takes over at half of it")
    max_epoch_step: PositiveInt = opt(1000, "largest step an assignment's epoch may take past "
                                            "the highest this node has seen (the "
                                            "broadcaster's rule, checked again here)")
    retained_epochs: NonNegativeInt = opt(2, "older committed epochs kept so their sessions "
                                             "drain")
    testbed_admin: bool = opt(False, "serve TestbedAdmin (emulated compute/link conditions)")
    serial_device: bool = opt(False, "test bed: the emulated slow device runs one step at a "
                                     "time (the holds of concurrent steps queue)")
    monitor: str = opt("", "monitor address host:port to push reports to (empty: off)")
    orchestrator: str = opt("", "orchestrator address: asked for a private route when a "
                                "privacy=high request finds none")
    default_privacy: Literal["low", "high"] = opt(
        "low", "entry: privacy of a Generate request that states none (PRIVACY_UNSPECIFIED)")
    broadcaster: str = opt("", "broadcaster address host:port to fetch shards from")
    utilization_scope: Literal["machine", "process"] = opt(
        "machine", "utilisation reported: 'machine' (one agent per host) or 'process' "
                   "(test bed: agents share a host)")
    report_interval_s: PositiveFloat = opt(1.0, "seconds between reports to the monitor")
    # Link probes (services/node_agent/reporter.py): bounded, and only for idle links.
    probe_bytes: NonNegativeInt = opt(64 * 1024, "bulk link probe payload for bandwidth (0: no "
                                                 "bulk probes); sent when a link's frames gave "
                                                 "no figure lately")
    bandwidth_probe_cycles: PositiveInt = opt(10, "report cycles without a bandwidth sample "
                                                  "before a link gets a bulk probe")
    probe_max_bytes: NonNegativeInt = opt(1024 * 1024, "largest probe payload this node answers")
