"""Typed configuration of the monitor service."""

from __future__ import annotations

from dataclasses import dataclass

from edgesplit.rpc.config import ServiceConfig, opt


@dataclass(frozen=True)
class MonitorConfig(ServiceConfig):
    """Monitor (CP): folds node reports into the environment state E(t)."""

    inventory: str = opt("", "YAML/JSON file of enrolled nodes (id, trust, memory_bytes, "
                             "flops_per_s, address, trusted_by); reports from others are refused")
    enroll_open: bool = opt(False, "dev only: enrol any node on its first report "
                                   "(untrusted, --default-flops-per-s)")
    max_open_enrolments: int = opt(64, "with --enroll-open: reports naming further new node "
                                       "ids are refused (enrolment_full) beyond this many")
    default_flops_per_s: float = opt(1e9, "declared speed of openly enrolled nodes until "
                                          "their measured layer times replace it")
    profile: str = opt("", "model profile JSON (`edgesplit model profile DIR --json`); "
                           "served in E(t) with measured per-layer costs")
    report_interval_s: float = opt(1.0, "the agents' report cycle (liveness and WatchState)")
    missed_cycles: int = opt(3, "a node is dead after this many cycles without a report")
    alpha: float = opt(0.3, "EWMA weight of the newest utilisation/memory/queue sample")
    layer_alpha: float = opt(0.3, "EWMA weight of the newest per-layer time")
    link_alpha: float = opt(0.3, "EWMA weight of the newest link RTT/bandwidth")
    latency_alpha: float = opt(0.2, "EWMA weight of the newest request latency")
    sla_step_budget_s: float = opt(0.4, "decode-step budget for requests not judged by agents")
    sla_window_s: float = opt(60.0, "SLA hit rate over requests of the last this many seconds")
