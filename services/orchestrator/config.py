"""Typed configuration of the orchestrator.

Defaults come from the pure control step's own (``edgesplit.core.control``:
the seed's Table 3), so the service and the simulator start from one set.
"""

from __future__ import annotations

from pydantic import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt

from edgesplit.core.control import ControlConfig
from edgesplit.core.environment import LinkAssumption
from edgesplit.rpc.config import CommaList, ServiceConfig, WireDtype, opt

_STEP = ControlConfig()
_TRIGGERS, _WEIGHTS, _LOAD, _LINK = _STEP.triggers, _STEP.weights, _STEP.workload, LinkAssumption()


class OrchestratorConfig(ServiceConfig):
    """Orchestrator (AO): the adaptive control loop."""

    monitor: str = opt("", "monitor address host:port (E(t) comes from here)")
    split_reviser: str = opt("", "split reviser address host:port")
    broadcaster: str = opt("", "broadcaster address host:port")
    db: str = opt("var/orchestrator.sqlite", "SQLite file for decisions and the plan in force")
    entries: CommaList = opt((), "entry node ids that need a route (comma-separated)")
    interval_s: PositiveFloat = opt(1.0, "monitoring interval: one decision per interval")
    latency_trigger_s: PositiveFloat = opt(_TRIGGERS.latency_ewma_s,
                                           "EWMA end-to-end step latency above this fires")
    utilization_trigger: PositiveFloat = opt(_TRIGGERS.max_utilization,
                                             "max node utilisation above this fires "
                                             "(above 1: never)")
    bandwidth_trigger_bps: NonNegativeFloat = opt(_TRIGGERS.min_link_bandwidth_bps,
                                                  "a plan link below this bandwidth fires")
    cooldown_s: NonNegativeFloat = opt(_TRIGGERS.cooldown_s, "minimum time between "
                                       "reconfigurations (not failover/privacy)")
    margin: float = opt(_STEP.margin, "adopt a new plan only if it is this much cheaper "
                        "(a fraction)", ge=0, lt=1)
    privacy_depth: NonNegativeInt = opt(_TRIGGERS.privacy_depth,
                                        "first decoder layers pinned with embed and head")
    privacy_hold_s: NonNegativeFloat = opt(_STEP.privacy_hold_s, "plan with privacy=high this "
                                           "long after a request for a private route")
    prompt_tokens: PositiveInt = opt(_LOAD.prompt_tokens,
                                     "workload: prompt length the plan is judged for")
    new_tokens: PositiveInt = opt(_LOAD.new_tokens, "workload: new tokens per request")
    requests_per_s: PositiveFloat = opt(_LOAD.requests_per_s, "workload: request rate")
    concurrent_sessions: PositiveInt = opt(_LOAD.concurrent_sessions,
                                           "workload: sessions in flight at once")
    batch_marginal_cost: float = opt(_LOAD.batch_marginal_cost, "workload: cost of one more "
                                     "session in a batched step, as a fraction of a step of "
                                     "one (1: no batching gain)", ge=0, le=1)
    max_replicas: PositiveInt = opt(_LOAD.max_replicas, "routes one entry may get when the "
                                    "load asks for capacity (1: one route per entry)")
    alpha: NonNegativeFloat = opt(_WEIGHTS.alpha, "objective weight of latency")
    beta: NonNegativeFloat = opt(_WEIGHTS.beta, "objective weight of utilisation imbalance")
    gamma: NonNegativeFloat = opt(_WEIGHTS.gamma, "objective weight of the privacy penalty")
    delta: NonNegativeFloat = opt(_WEIGHTS.delta, "objective weight of the queueing the "
                                  "offered load causes (0: not in the objective)")
    initial_wait_s: NonNegativeFloat = opt(_STEP.initial_wait_s, "before the first plan, wait "
                                           "this long for links between alive nodes to be "
                                           "measured")
    default_link_rtt_s: NonNegativeFloat = opt(_LINK.rtt_s, "assumed RTT of an unmeasured link")
    default_link_bandwidth_bps: PositiveFloat = opt(_LINK.bandwidth_bps,
                                                    "assumed bandwidth of an unmeasured link")
    retry_backoff_s: NonNegativeFloat = opt(_STEP.retry_backoff_s, "after an aborted or "
                                            "failed rollout, wait this long before trying "
                                            "another")
    static: bool = opt(_STEP.static, "roll out the initial plan and never change it "
                                     "(baseline)")
    wire_dtype: WireDtype = opt("float32", "activation dtype on the wire")
    apply_timeout_s: PositiveFloat = opt(120.0, "deadline of one rollout")
