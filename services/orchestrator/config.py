"""Typed configuration of the orchestrator (defaults: the seed's Table 3)."""

from __future__ import annotations

from pydantic import Field

from edgesplit.rpc.config import CommaList, ServiceConfig, WireDtype


class OrchestratorConfig(ServiceConfig):
    """Orchestrator (AO): the adaptive control loop."""

    monitor: str = Field("", description="monitor address host:port (E(t) comes from here)")
    split_reviser: str = Field("", description="split reviser address host:port")
    broadcaster: str = Field("", description="broadcaster address host:port")
    db: str = Field("var/orchestrator.sqlite", description="SQLite file for decisions and the "
                                                           "plan in force")
    entries: CommaList = Field((), description="entry node ids that need a route "
                                               "(comma-separated)")
    interval_s: float = Field(1.0, gt=0, description="monitoring interval: one decision per "
                                                     "interval")
    latency_trigger_s: float = Field(0.150, gt=0, description="EWMA end-to-end step latency "
                                                              "above this fires")
    utilization_trigger: float = Field(0.85, gt=0, description="max node utilisation above "
                                                               "this fires (above 1: never)")
    bandwidth_trigger_bps: float = Field(50e6, ge=0, description="a plan link below this "
                                                                 "bandwidth fires")
    cooldown_s: float = Field(30.0, ge=0, description="minimum time between reconfigurations "
                                                      "(not failover/privacy)")
    margin: float = Field(0.05, ge=0, lt=1, description="adopt a new plan only if it is this "
                                                        "much cheaper (a fraction)")
    privacy_depth: int = Field(1, ge=0, description="first decoder layers pinned with embed "
                                                    "and head")
    privacy_hold_s: float = Field(120.0, ge=0, description="plan with privacy=high this long "
                                                           "after a request for a private route")
    prompt_tokens: int = Field(64, ge=1, description="workload: prompt length the plan is "
                                                     "judged for")
    new_tokens: int = Field(64, ge=1, description="workload: new tokens per request")
    requests_per_s: float = Field(1.0, gt=0, description="workload: request rate")
    alpha: float = Field(1.0, ge=0, description="objective weight of latency")
    beta: float = Field(0.1, ge=0, description="objective weight of utilisation imbalance")
    gamma: float = Field(10.0, ge=0, description="objective weight of the privacy penalty")
    initial_wait_s: float = Field(10.0, ge=0, description="before the first plan, wait this "
                                                          "long for links between alive nodes "
                                                          "to be measured")
    default_link_rtt_s: float = Field(0.01, ge=0, description="assumed RTT of a link not "
                                                              "measured yet")
    default_link_bandwidth_bps: float = Field(100e6, gt=0, description="assumed bandwidth of a "
                                                                       "link not measured yet")
    retry_backoff_s: float = Field(2.0, ge=0, description="after an aborted or failed rollout, "
                                                          "wait this long before trying another")
    static: bool = Field(False, description="roll out the initial plan and never change it "
                                            "(baseline)")
    wire_dtype: WireDtype = Field("float32", description="activation dtype on the wire")
    apply_timeout_s: float = Field(120.0, gt=0, description="deadline of one rollout")
