"""Typed configuration of the monitor service."""

from __future__ import annotations

from pydantic import Field

from edgesplit.rpc.config import ServiceConfig


class MonitorConfig(ServiceConfig):
    """Monitor (CP): folds node reports into the environment state E(t)."""

    inventory: str = Field("", description="YAML/JSON file of enrolled nodes (id, trust, "
                                           "memory_bytes, flops_per_s, address, trusted_by); "
                                           "reports from others are refused")
    enroll_open: bool = Field(False, description="dev only: enrol any node on its first report "
                                                 "(untrusted, --default-flops-per-s)")
    default_flops_per_s: float = Field(1e9, gt=0, description="declared speed of openly "
                                                              "enrolled nodes until their "
                                                              "measured layer times replace it")
    profile: str = Field("", description="model profile JSON (`edgesplit model profile DIR "
                                         "--json`); served in E(t) with measured per-layer "
                                         "costs")
    report_interval_s: float = Field(1.0, gt=0, description="the agents' report cycle "
                                                            "(liveness and WatchState)")
    missed_cycles: int = Field(3, ge=1, description="a node is dead after this many cycles "
                                                    "without a report")
    alpha: float = Field(0.3, gt=0, le=1, description="EWMA weight of the newest utilisation/"
                                                      "memory/queue sample")
    layer_alpha: float = Field(0.3, gt=0, le=1, description="EWMA weight of the newest "
                                                            "per-layer time")
    link_alpha: float = Field(0.3, gt=0, le=1, description="EWMA weight of the newest link "
                                                           "RTT/bandwidth")
    latency_alpha: float = Field(0.2, gt=0, le=1, description="EWMA weight of the newest "
                                                              "request latency")
    sla_step_budget_s: float = Field(0.4, gt=0, description="decode-step budget for requests "
                                                            "not judged by agents")
    sla_window_s: float = Field(60.0, gt=0, description="SLA hit rate over requests of the "
                                                        "last this many seconds")
