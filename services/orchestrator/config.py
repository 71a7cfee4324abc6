"""Typed configuration of the orchestrator (defaults: the seed's Table 3)."""

from __future__ import annotations

from pydantic import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt

from edgesplit.rpc.config import CommaList, ServiceConfig, WireDtype, opt


class OrchestratorConfig(ServiceConfig):
    """Orchestrator (AO): the adaptive control loop."""

    monitor: str = opt("", "monitor address host:port (E(t) comes from here)")
    split_reviser: str = opt("", "split reviser address host:port")
    broadcaster: str = opt("", "broadcaster address host:port")
    db: str = opt("var/orchestrator.sqlite", "SQLite file for decisions and the plan in force")
    entries: CommaList = opt((), "entry node ids that need a route (comma-separated)")
    interval_s: PositiveFloat = opt(1.0, "monitoring interval: one decision per interval")
    latency_trigger_s: PositiveFloat = opt(0.150, "EWMA end-to-end step latency above this "
                                                  "fires")
    utilization_trigger: PositiveFloat = opt(0.85, "max node utilisation above this fires "
                                                   "(above 1: never)")
    bandwidth_trigger_bps: NonNegativeFloat = opt(50e6, "a plan link below this bandwidth fires")
    cooldown_s: NonNegativeFloat = opt(30.0, "minimum time between reconfigurations (not "
                                             "failover/privacy)")
    margin: float = opt(0.05, "adopt a new plan only if it is this much cheaper (a fraction)",
                        ge=0, lt=1)
    privacy_depth: NonNegativeInt = opt(1, "first decoder layers pinned with embed and head")
    privacy_hold_s: NonNegativeFloat = opt(120.0, "plan with privacy=high this long after a "
                                                  "request for a private route")
    prompt_tokens: PositiveInt = opt(64, "workload: prompt length the plan is judged for")
    new_tokens: PositiveInt = opt(64, "workload: new tokens per request")
    requests_per_s: PositiveFloat = opt(1.0, "workload: request rate")
    alpha: NonNegativeFloat = opt(1.0, "objective weight of latency")
    beta: NonNegativeFloat = opt(0.1, "objective weight of utilisation imbalance")
    gamma: NonNegativeFloat = opt(10.0, "objective weight of the privacy penalty")
    initial_wait_s: NonNegativeFloat = opt(10.0, "before the first plan, wait this long for "
                                                 "links between alive nodes to be measured")
    default_link_rtt_s: NonNegativeFloat = opt(0.01, "assumed RTT of a link not measured yet")
    default_link_bandwidth_bps: PositiveFloat = opt(100e6, "assumed bandwidth of a link not "
                                                           "measured yet")
    retry_backoff_s: NonNegativeFloat = opt(2.0, "after an aborted or failed rollout, wait "
                                                 "this long before trying another")
    static: bool = opt(False, "roll out the initial plan and never change it (baseline)")
    wire_dtype: WireDtype = opt("float32", "activation dtype on the wire")
    apply_timeout_s: PositiveFloat = opt(120.0, "deadline of one rollout")
