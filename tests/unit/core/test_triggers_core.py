"""Table 3 triggers, the cool-down, hysteresis and Algorithm 1's placement-then-resplit order."""

from __future__ import annotations

import pytest

from edgesplit.core.environment import EnvironmentState
from edgesplit.core.inventory import NodeInventory
from edgesplit.core.monitor import Monitor, MonitorConfig
from edgesplit.core.reports import LinkObservation, NodeReport, RequestSample, ResourceSample
from edgesplit.core.triggers import (
    TriggerConfig,
    TriggerKind,
    decide_revision,
    evaluate_triggers,
    plan_links,
    should_adopt,
)
from edgesplit.core.types import (
    EMBED_ONLY,
    HEAD_ONLY,
    CostBreakdown,
    Epoch,
    Mode,
    NodeId,
    NodeState,
    Plan,
    Route,
    Segment,
    Trust,
)

A, B, C, D = NodeId("a"), NodeId("b"), NodeId("c"), NodeId("d")
NOW = 100.0
FAST = 1e9

# Ring a(embed, 0-2) -> b(2-4) -> c(4-6) -> a(head): links a->b, b->c, c->a.
PLAN = Plan(
    Epoch(1),
    "digest",
    (
        Route(
            A,
            (
                Segment(A, 0, 2, EMBED_ONLY),
                Segment(B, 2, 4),
                Segment(C, 4, 6),
                Segment(A, 6, 6, HEAD_ONLY),
            ),
        ),
    ),
)
INVENTORY = NodeInventory(
    tuple(NodeState(n, Trust.TRUSTED, 1 << 30, 1e12) for n in (A, B, C))
    + (NodeState(D, Trust.UNTRUSTED, 1 << 30, 1e12),)
)


def report(
    node: str, cpu: float, links: tuple[tuple[str, float], ...], steps_s: float | None
) -> NodeReport:
    """One report: CPU load, ``(peer, bandwidth)`` links, maybe one finished request."""
    reqs = () if steps_s is None else (RequestSample(0.2, (steps_s,)),)
    obs = tuple(LinkObservation(NodeId(p), 0.01, bw) for p, bw in links)
    return NodeReport(NodeId(node), 0, 0.0, ResourceSample(cpu, 1, 2), requests=reqs, links=obs)


def env(
    *,
    util: dict[str, float] | None = None,
    bandwidth: dict[tuple[str, str], float] | None = None,
    silent: tuple[str, ...] = (),
    steps_s: float | None = None,
) -> EnvironmentState:
    """E(t) at NOW after one report per node (silent nodes last reported long ago)."""
    util = util or {}
    bw = {("a", "b"): FAST, ("b", "c"): FAST, ("c", "a"): FAST, ("b", "a"): FAST}
    bw.update(bandwidth or {})
    m = Monitor(MonitorConfig(), [A, B, C, D], now=0.0)
    for n in "abcd":
        links = tuple((dst, v) for (src, dst), v in bw.items() if src == n)
        at = 0.0 if n in silent else NOW
        m.ingest(report(n, util.get(n, 0.3), links, steps_s if n == "a" else None), now=at)
    return m.snapshot(NOW)


def kinds(e: EnvironmentState, plan: Plan = PLAN, **kw: object) -> set[TriggerKind]:
    decision = evaluate_triggers(e, plan, INVENTORY, None, NOW, **kw)  # type: ignore[arg-type]
    assert decision.act == bool(decision.fired)  # no cool-down here
    return set(decision.kinds)


def test_quiet_cluster_fires_nothing() -> None:
    d = evaluate_triggers(env(steps_s=0.1), PLAN, INVENTORY, None, NOW)
    assert d.fired == () and not d.act and not d.suppressed_by_cooldown


def test_latency_trigger() -> None:
    assert kinds(env(steps_s=0.151)) == {TriggerKind.LATENCY}
    assert kinds(env(steps_s=0.149)) == set()
    cfg = TriggerConfig(latency_ewma_s=0.5)
    assert not evaluate_triggers(env(steps_s=0.3), PLAN, INVENTORY, None, NOW, cfg).fired


def test_utilisation_trigger_watches_plan_nodes_only() -> None:
    assert kinds(env(util={"b": 0.86})) == {TriggerKind.UTILIZATION}
    assert kinds(env(util={"b": 0.85})) == set()
    assert kinds(env(util={"d": 0.99})) == set()  # d carries none of the plan's load
    d = evaluate_triggers(env(util={"b": 0.9, "c": 0.95}), PLAN, INVENTORY, None, NOW)
    assert d.fired[0].subject == "c" and d.fired[0].value == pytest.approx(0.95)


def test_bandwidth_trigger_only_considers_links_on_the_plans_routes() -> None:
    assert plan_links(PLAN) == ((A, B), (B, C), (C, A))
    assert kinds(env(bandwidth={("c", "a"): 40e6})) == {TriggerKind.BANDWIDTH}  # the return hop
    assert kinds(env(bandwidth={("b", "a"): 1e6})) == set()  # b->a is not on the ring
    assert kinds(env(bandwidth={("a", "b"): 50e6})) == set()  # at the threshold is fine
    d = evaluate_triggers(env(bandwidth={("a", "b"): 10e6}), PLAN, INVENTORY, None, NOW)
    assert d.fired[0].subject == "a->b"


def test_failover_trigger_on_a_dead_plan_node() -> None:
    e = env(silent=("c",), bandwidth={("c", "a"): 1e6})
    assert kinds(e) == {TriggerKind.FAILOVER}  # a dead node's slow link is not blamed twice
    assert kinds(env(silent=("d",))) == set()  # d is not in the plan


def test_privacy_trigger_needs_a_pending_high_request_and_an_untrusted_sensitive_node() -> None:
    segments = (Segment(A, 0, 0, EMBED_ONLY), Segment(D, 0, 6), Segment(A, 6, 6, HEAD_ONLY))
    leaky = Plan(Epoch(2), "digest", (Route(A, segments),))
    e = env(bandwidth={("a", "d"): FAST, ("d", "a"): FAST})
    assert kinds(e, leaky) == set()  # no privacy=high request waiting
    assert kinds(e, leaky, pending_privacy_high={A: 1}) == {TriggerKind.PRIVACY}
    assert kinds(e, leaky, pending_privacy_high=2) == {TriggerKind.PRIVACY}  # at any entry
    assert (
        TriggerKind.PRIVACY
        not in evaluate_triggers(e, leaky, INVENTORY, None, NOW, pending_privacy_high={B: 3}).kinds
    )  # a request at another entry does not cross d
    deep = TriggerConfig(privacy_depth=3)  # layer 2 on b: b is trusted, so still fine
    assert (
        TriggerKind.PRIVACY
        not in evaluate_triggers(
            env(), PLAN, INVENTORY, None, NOW, deep, pending_privacy_high=1
        ).kinds
    )
    assert kinds(env(), privacy_violation=True) == {TriggerKind.PRIVACY}


def test_cooldown_holds_latency_utilisation_and_bandwidth() -> None:
    e = env(steps_s=0.3, util={"b": 0.9}, bandwidth={("b", "c"): 1e6})
    held = evaluate_triggers(e, PLAN, INVENTORY, last_reconfig_at=NOW - 10, now=NOW)
    assert held.kinds == {TriggerKind.LATENCY, TriggerKind.UTILIZATION, TriggerKind.BANDWIDTH}
    assert not held.act and held.suppressed_by_cooldown
    assert "cool-down" in held.reason
    after = evaluate_triggers(e, PLAN, INVENTORY, last_reconfig_at=NOW - 30, now=NOW)
    assert after.act and not after.suppressed_by_cooldown


def test_cooldown_never_holds_failover_or_privacy() -> None:
    e = env(steps_s=0.3, silent=("b",))
    d = evaluate_triggers(e, PLAN, INVENTORY, NOW - 1, NOW, privacy_violation=True)
    assert d.act and d.suppressed_by_cooldown  # latency held, the urgent two act
    assert {TriggerKind.FAILOVER, TriggerKind.PRIVACY, TriggerKind.LATENCY} == d.kinds
    assert "failover" in d.reason and "cool-down" in d.reason


def test_without_a_plan_only_latency_applies() -> None:
    d = evaluate_triggers(env(steps_s=0.3, silent=("a",)), None, INVENTORY, None, NOW)
    assert d.kinds == {TriggerKind.LATENCY}


# -- adopting -------------------------------------------------------------------


def cost(total: float, feasible: bool = True) -> CostBreakdown:
    return CostBreakdown(total, total, total, total, 0.0, 0.0, feasible)


def test_should_adopt_applies_the_margin() -> None:
    assert should_adopt(cost(1.0), cost(0.89), margin=0.1)
    assert not should_adopt(cost(1.0), cost(0.9), margin=0.1)  # not strictly better enough
    assert not should_adopt(cost(1.0), cost(0.95), margin=0.1)
    assert should_adopt(cost(1.0), cost(0.99), margin=0.0)


def test_should_adopt_feasibility_rules() -> None:
    assert should_adopt(
        cost(1.0, feasible=False), cost(50.0), margin=0.1
    )  # any feasible beats none
    assert should_adopt(None, cost(50.0), margin=0.1)
    assert not should_adopt(cost(1.0), cost(0.1, feasible=False), margin=0.1)
    assert not should_adopt(cost(1.0, feasible=False), cost(0.1, feasible=False), margin=0.1)
    assert not should_adopt(cost(1.0), None, margin=0.1)


def test_placement_first_then_resplit() -> None:
    good = decide_revision(cost(1.0), cost(0.5), margin=0.1)
    assert good.adopt is None and good.try_resplit  # a good placement: weigh a re-split too

    for placement in (cost(0.95), cost(0.1, feasible=False), None):
        step = decide_revision(cost(1.0), placement, margin=0.1)
        assert step.adopt is None and step.try_resplit  # ask for a re-split next

    assert decide_revision(cost(1.0), cost(0.95), cost(0.5), 0.1).adopt is Mode.RESPLIT
    keep = decide_revision(cost(1.0), cost(0.95), cost(0.93), 0.1)
    assert keep.adopt is None and not keep.try_resplit and "keep" in keep.reason
    # A good placement is taken unless the re-split beats it by the margin too.
    assert decide_revision(cost(1.0), cost(0.5), cost(0.46), 0.1).adopt is Mode.PLACEMENT
    assert decide_revision(cost(1.0), cost(0.5), cost(0.44), 0.1).adopt is Mode.RESPLIT
    assert decide_revision(cost(1.0), cost(0.5), cost(0.1, False), 0.1).adopt is Mode.PLACEMENT
    # Failover: the current plan is infeasible, so any feasible result is taken.
    assert decide_revision(cost(1.0, False), cost(9.0), cost(9.5), 0.1).adopt is Mode.PLACEMENT
    assert decide_revision(cost(1.0, False), None, cost(9.0), 0.1).adopt is Mode.RESPLIT
