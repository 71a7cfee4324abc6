"""Load-aware planning: queueing in the objective, replicas under high load."""

from __future__ import annotations

from edgesplit.core import types as t
from edgesplit.core.cost import evaluate
from edgesplit.core.planner import loaded_total, solve
from edgesplit.core.route import check_route
from edgesplit.core.types import ClusterState, NodeId, Plan, Weights, Workload

A, B, C = NodeId("A"), NodeId("B"), NodeId("C")
W = Weights(alpha=1.0, beta=0.0, gamma=10.0)
PROFILE = t.ModelProfile("rep", (t.LayerCost(100, 1e9, 0),) * 4, t.LayerCost(10, 1e6, 0),
                         t.LayerCost(10, 1e8, 0), 1000, "rep")


def cluster() -> ClusterState:
    """A weak entry that holds no layers, two equal fast nodes that hold all four."""
    nodes = (t.NodeState(A, t.Trust.TRUSTED, 30, 1e11),
             t.NodeState(B, t.Trust.TRUSTED, 500, 1e12),
             t.NodeState(C, t.Trust.TRUSTED, 500, 1e12))
    links = tuple(t.LinkState(x, y, 0.002, 1e9) for x in (A, B, C) for y in (A, B, C) if x != y)
    return ClusterState(nodes, links)


def load(rps: float, replicas: int = 3) -> Workload:
    return Workload(prompt_tokens=8, new_tokens=24, requests_per_s=rps, kv_budget_tokens=1,
                    max_replicas=replicas)


def test_low_load_keeps_one_route() -> None:
    res = solve(cluster(), PROFILE, load(0.5), [A], weights=W)
    assert res.plan is not None and len(res.plan.routes) == 1
    assert res.optimal and "replicas" not in res.stats.method


def test_high_load_replicates_onto_disjoint_nodes() -> None:
    one = solve(cluster(), PROFILE, load(8.0, replicas=1), [A], weights=W)
    res = solve(cluster(), PROFILE, load(8.0), [A], weights=W)
    assert one.plan is not None and res.plan is not None, res.reason
    assert "replicas" in res.stats.method
    routes = res.plan.routes_for(A)
    assert [r.replica for r in routes] == [0, 1] and [r.key for r in routes] == ["A", "A#1"]
    for r in routes:
        check_route(r, PROFILE.num_layers)
    middle = [set(r.nodes) - {A} for r in routes]
    assert middle[0].isdisjoint(middle[1]) and middle[0] | middle[1] == {B, C}
    # Twice the capacity, a fraction of the waiting, a lower total.
    assert res.cost.capacity_rps > 1.9 * one.cost.capacity_rps
    assert res.cost.queueing_s < 0.5 * one.cost.queueing_s
    assert loaded_total(res.cost, W) < loaded_total(one.cost, W)
    assert evaluate(res.plan, cluster(), PROFILE, load(8.0), W) == res.cost


def test_replicas_are_the_same_plan_for_the_same_inputs() -> None:
    a = solve(cluster(), PROFILE, load(8.0), [A], weights=W)
    b = solve(cluster(), PROFILE, load(8.0), [A], weights=W)
    assert a == b


def test_placement_of_a_replicated_plan_keeps_every_entry_once() -> None:
    first = solve(cluster(), PROFILE, load(8.0), [A], weights=W)
    assert first.plan is not None and len(first.plan.routes) == 2
    assert first.plan.entries == (A,)
    calm = solve(cluster(), PROFILE, load(0.5), first.plan.entries, weights=W,
                 current=first.plan)
    assert calm.plan is not None and isinstance(calm.plan, Plan)
    assert len(calm.plan.routes) == 1  # the load fell: one route again


def test_closed_loop_sessions_replicate_even_at_a_low_served_rate() -> None:
    """Twelve sessions always stepping: the rate served is low because the one
    route is saturated; the closed-network bound sees it and replicates."""
    closed = Workload(prompt_tokens=8, new_tokens=24, requests_per_s=0.2, kv_budget_tokens=1,
                      concurrent_sessions=12, max_replicas=3)
    one = solve(cluster(), PROFILE, Workload(**{**{f: getattr(closed, f)
                                                    for f in closed.__slots__},
                                                 "max_replicas": 1}), [A], weights=W)
    assert one.plan is not None
    # 12 sessions x B's 4 ms step = 48 ms per step, the ring alone ~7 ms.
    assert one.cost.queueing_s > 5 * one.cost.mean_latency_s
    res = solve(cluster(), PROFILE, closed, [A], weights=W)
    assert res.plan is not None and len(res.plan.routes) >= 2
    assert {n for r in res.plan.routes for n in r.nodes} == {A, B, C}
    assert res.cost.queueing_s < 0.6 * one.cost.queueing_s
