"""The control step's settings from the orchestrator's flags, by name.

The names are ``OrchestratorConfig``'s (``--latency-trigger-s`` is
``latency_trigger_s``). The orchestrator service and the simulator both build
their ``ControlConfig`` here, so one scenario file tunes the real loop and the
simulated one the same way (docs/architecture.md §9). A flag absent takes
the step's default; a name that is no setting of the step is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edgesplit.core.control import ControlConfig
from edgesplit.core.environment import LinkAssumption
from edgesplit.core.triggers import TriggerConfig
from edgesplit.core.types import NodeId, Weights, Workload

FLAGS = frozenset({
    "latency_trigger_s", "utilization_trigger", "bandwidth_trigger_bps", "cooldown_s",
    "privacy_depth", "margin", "alpha", "beta", "gamma", "delta", "prompt_tokens",
    "new_tokens", "requests_per_s", "concurrent_sessions", "batch_marginal_cost",
    "max_replicas", "entries", "default_link_rtt_s", "default_link_bandwidth_bps",
    "initial_wait_s", "retry_backoff_s", "privacy_hold_s", "static"})


def control_config(flags: Mapping[str, Any]) -> ControlConfig:
    """The step's settings from ``flags`` (names in ``FLAGS``)."""
    unknown = set(flags) - FLAGS
    if unknown:
        raise ValueError(f"not a setting of the control step: {', '.join(sorted(unknown))}")
    base = ControlConfig()
    t, w, wl, link = base.triggers, base.weights, base.workload, base.assumed_link
    assert link is not None

    def num(key: str, default: float) -> float:
        return float(flags.get(key, default))

    def count(key: str, default: int) -> int:
        return int(flags.get(key, default))

    depth = count("privacy_depth", t.privacy_depth)
    return ControlConfig(
        triggers=TriggerConfig(
            latency_ewma_s=num("latency_trigger_s", t.latency_ewma_s),
            max_utilization=num("utilization_trigger", t.max_utilization),
            min_link_bandwidth_bps=num("bandwidth_trigger_bps", t.min_link_bandwidth_bps),
            cooldown_s=num("cooldown_s", t.cooldown_s), privacy_depth=depth),
        margin=num("margin", base.margin),
        weights=Weights(num("alpha", w.alpha), num("beta", w.beta), num("gamma", w.gamma),
                        num("delta", w.delta)),
        workload=Workload(prompt_tokens=count("prompt_tokens", wl.prompt_tokens),
                          new_tokens=count("new_tokens", wl.new_tokens),
                          requests_per_s=num("requests_per_s", wl.requests_per_s),
                          privacy_depth=depth,
                          concurrent_sessions=count("concurrent_sessions",
                                                    wl.concurrent_sessions),
                          batch_marginal_cost=num("batch_marginal_cost",
                                                  wl.batch_marginal_cost),
                          max_replicas=count("max_replicas", wl.max_replicas)),
        entries=tuple(NodeId(e) for e in flags.get("entries", base.entries)),
        assumed_link=LinkAssumption(num("default_link_rtt_s", link.rtt_s),
                                    num("default_link_bandwidth_bps", link.bandwidth_bps)),
        initial_wait_s=num("initial_wait_s", base.initial_wait_s),
        retry_backoff_s=num("retry_backoff_s", base.retry_backoff_s),
        privacy_hold_s=num("privacy_hold_s", base.privacy_hold_s),
        static=bool(flags.get("static", base.static)))
