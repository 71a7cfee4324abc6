"""Typed configuration of the monitor service.

The reducer's settings default to the pure reducer's own
(``edgesplit.core.monitor.MonitorConfig``), so there is one set of them.
"""

from __future__ import annotations

from pydantic import NonNegativeInt, PositiveFloat, PositiveInt

from edgesplit.core.monitor import MonitorConfig as ReducerConfig
from edgesplit.rpc.config import EwmaWeight, ServiceConfig, opt

_REDUCER = ReducerConfig()


class MonitorConfig(ServiceConfig):
    """Monitor (CP): folds node reports into the environment state E(t)."""

    inventory: str = opt("", "YAML/JSON file of enrolled nodes (id, trust, memory_bytes, "
                             "flops_per_s, address, trusted_by); reports from others are "
                             "refused")
    enroll_open: bool = opt(False, "dev only: enrol any node on its first report (untrusted, "
                                   "--default-flops-per-s)")
    max_open_enrolments: NonNegativeInt = opt(64, "with --enroll-open: reports naming further "
                                                  "new node ids are refused (enrolment_full) "
                                                  "beyond this many")
    default_flops_per_s: PositiveFloat = opt(1e9, "declared speed of openly enrolled nodes "
                                                  "until their measured layer times replace it")
    profile: str = opt("", "model profile JSON (`edgesplit model profile DIR --json`); served "
                           "in E(t) with measured per-layer costs")
    report_interval_s: PositiveFloat = opt(_REDUCER.report_interval_s, "the agents' report "
                                           "cycle (liveness and WatchState)")
    missed_cycles: PositiveInt = opt(_REDUCER.missed_cycles, "a node is dead after this many "
                                     "cycles without a report")
    alpha: EwmaWeight = opt(_REDUCER.alpha,
                            "EWMA weight of the newest utilisation/memory/queue sample")
    layer_alpha: EwmaWeight = opt(_REDUCER.layer_alpha,
                                  "EWMA weight of the newest per-layer time")
    link_alpha: EwmaWeight = opt(_REDUCER.link_alpha,
                                 "EWMA weight of the newest link RTT/bandwidth")
    latency_alpha: EwmaWeight = opt(_REDUCER.latency_alpha,
                                    "EWMA weight of the newest request latency")
    sla_step_budget_s: PositiveFloat = opt(_REDUCER.sla_step_budget_s, "decode-step budget "
                                           "for requests not judged by agents")
    sla_window_s: PositiveFloat = opt(_REDUCER.sla_window_s or 60.0, "SLA hit rate over "
                                      "requests of the last this many seconds")
