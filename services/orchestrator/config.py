"""Typed configuration of the orchestrator (defaults: the seed's Table 3)."""

from __future__ import annotations

from dataclasses import dataclass

from edgesplit.rpc.config import ServiceConfig, opt


@dataclass(frozen=True)
class OrchestratorConfig(ServiceConfig):
    """Orchestrator (AO): the adaptive control loop."""

    monitor: str = opt("", "monitor address host:port (E(t) comes from here)")
    split_reviser: str = opt("", "split reviser address host:port")
    broadcaster: str = opt("", "broadcaster address host:port")
    db: str = opt("var/orchestrator.sqlite", "SQLite file for decisions and the plan in force")
    entries: tuple[str, ...] = opt((), "entry node ids that need a route (comma-separated)")
    interval_s: float = opt(1.0, "monitoring interval: one decision per interval")
    latency_trigger_s: float = opt(0.150, "EWMA end-to-end step latency above this fires")
    utilization_trigger: float = opt(0.85, "max node utilisation above this fires")
    bandwidth_trigger_bps: float = opt(50e6, "a plan link below this bandwidth fires")
    cooldown_s: float = opt(30.0, "minimum time between reconfigurations (not failover/privacy)")
    margin: float = opt(0.05, "adopt a new plan only if it is this much cheaper")
    privacy_depth: int = opt(1, "first decoder layers pinned with embed and head")
    privacy_hold_s: float = opt(120.0, "plan with privacy=high this long after a request "
                                       "for a private route")
    prompt_tokens: int = opt(64, "workload: prompt length the plan is judged for")
    new_tokens: int = opt(64, "workload: new tokens per request")
    requests_per_s: float = opt(1.0, "workload: request rate")
    alpha: float = opt(1.0, "objective weight of latency")
    beta: float = opt(0.1, "objective weight of utilisation imbalance")
    gamma: float = opt(10.0, "objective weight of the privacy penalty")
    initial_wait_s: float = opt(10.0, "before the first plan, wait this long for links "
                                      "between alive nodes to be measured")
    default_link_rtt_s: float = opt(0.01, "assumed RTT of a link not measured yet")
    default_link_bandwidth_bps: float = opt(100e6, "assumed bandwidth of a link not measured yet")
    retry_backoff_s: float = opt(2.0, "after an aborted or failed rollout, wait this long "
                                       "before trying another")
    static: bool = opt(False, "roll out the initial plan and never change it (baseline)")
    wire_dtype: str = opt("float32", "activation dtype on the wire")
    apply_timeout_s: float = opt(120.0, "deadline of one rollout")
