"""Properties of the planner on random small instances (seeded, derandomised).

The validity check below is written from the problem statement, independently
of ``edgesplit.core.cost``; optimality is checked against the MILP.
"""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgesplit.core.cost import kv_bytes
from edgesplit.core.milp import relaxed_bound, solve_milp
from edgesplit.core.planner import SolverOptions, solve
from edgesplit.core.planner_bounds import lagrangian
from edgesplit.core.planner_dp import dssr, path_cost, relaxed_route
from edgesplit.core.planner_instances import small_instance
from edgesplit.core.planner_problem import Instance
from edgesplit.core.route import route_error, route_from_cuts
from edgesplit.core.trust import trusts
from edgesplit.core.types import (
    ClusterState,
    Mode,
    ModelProfile,
    NodeId,
    Plan,
    Privacy,
    Weights,
    Workload,
)

W = Weights(alpha=1.0, beta=0.0, gamma=10.0)  # the planning objective: what is certified
ENTRY = NodeId("n0")
SEEDS = st.integers(min_value=0, max_value=2**32 - 1)
FEW = settings(max_examples=80, derandomize=True, deadline=None)
# Force the heuristic tiers on small instances: seed + bounds + pool, and the screen first.
PRUNED = SolverOptions(candidates=2, pool=3)
SCREENED = SolverOptions(candidates=2, pool=3, bound_work=1, screen_nodes=4)


def violations(plan: Plan, state: ClusterState, profile: ModelProfile, wl: Workload) -> list[str]:
    """Every broken rule of ``plan``, checked from first principles."""
    bad: list[str] = []
    nodes = {n.node_id: n for n in state.nodes}
    links = {(link.src, link.dst) for link in state.links}
    L = profile.num_layers
    weights: dict[NodeId, set[int | str]] = {}
    kv: dict[NodeId, int] = {}
    for r in plan.routes:
        segs = r.segments
        layers = [i for s in segs for i in range(s.start, s.end)]
        if layers != list(range(L)):
            bad.append(f"{r.entry}: layers {layers} are not each layer once in order")
        if any(b.start != a.end for a, b in itertools.pairwise(segs)):
            bad.append(f"{r.entry}: segments not contiguous")
        if segs[0].node != r.entry or not segs[0].has_embed:
            bad.append(f"{r.entry}: embed not on the entry")
        if segs[-1].node != r.entry or not segs[-1].has_head:
            bad.append(f"{r.entry}: head not on the entry")
        others = [s.node for s in segs if s.node != r.entry]
        if len(others) != len(set(others)):
            bad.append(f"{r.entry}: a node holds two segments")
        # The one route shape: the core validator agrees, and the builder gives it back.
        why = route_error(r, L)
        if why:
            bad.append(why)
        elif route_from_cuts(r.entry, [r.entry, *r.nodes[1:-1]], r.cuts, L) != r:
            bad.append(f"{r.entry}: route_from_cuts does not rebuild it from its cuts")
        for s in segs:
            node = nodes.get(s.node)
            if node is None or not node.alive:
                bad.append(f"{r.entry}: {s.node} is not alive")
                continue
            held = weights.setdefault(s.node, set())
            held.update(range(s.start, s.end))
            kv[s.node] = kv.get(s.node, 0) + sum(
                kv_bytes(profile.layers[i], wl) for i in range(s.start, s.end)
            )
            if s.has_embed:
                held.add("embed")
            if s.has_head:
                held.add("head")
            sensitive = s.has_embed or s.has_head or s.start < min(wl.privacy_depth, L)
            if wl.privacy is Privacy.HIGH and sensitive and not trusts(node, r.entry):
                bad.append(f"{r.entry}: sensitive layers on untrusted {s.node}")
        for a, b in zip(r.nodes, r.nodes[1:], strict=False):
            if a != b and (a, b) not in links:
                bad.append(f"{r.entry}: no link {a} -> {b}")
    size = {"embed": profile.embed.weight_bytes, "head": profile.head.weight_bytes}
    for node_id, items in weights.items():
        used = sum(size[i] if isinstance(i, str) else profile.layers[i].weight_bytes for i in items)
        if used + kv[node_id] > nodes[node_id].memory_bytes:
            bad.append(f"{node_id}: {used + kv[node_id]} bytes > {nodes[node_id].memory_bytes}")
    return bad


def close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-7 * max(abs(a), abs(b), 1e-9)


@FEW
@given(SEEDS)
def test_exact_plan_is_valid_and_matches_milp(seed: int) -> None:
    state, profile, wl = small_instance(random.Random(seed))
    res = solve(state, profile, wl, [ENTRY], weights=W)
    milp = solve_milp(state, profile, wl, [ENTRY], W)
    if res.plan is None:
        assert res.reason and not res.cost.feasible
        assert milp.plan is None, f"planner: {res.reason}; MILP found {milp.objective}"
        return
    assert violations(res.plan, state, profile, wl) == []
    assert res.optimal and res.gap == 0.0
    assert milp.optimal and milp.objective is not None
    assert close(res.stats.objective, milp.objective)
    assert milp.plan is not None and violations(milp.plan, state, profile, wl) == []


@FEW
@given(SEEDS)
def test_heuristic_plans_are_valid_and_bounds_hold(seed: int) -> None:
    state, profile, wl = small_instance(random.Random(seed), max_nodes=7)
    exact = solve(state, profile, wl, [ENTRY], weights=W)
    for opts in (PRUNED, SCREENED):
        res = solve(state, profile, wl, [ENTRY], weights=W, options=opts)
        if res.plan is None:
            assert res.reason
            continue
        assert exact.plan is not None  # the heuristic never finds what exact search cannot
        assert violations(res.plan, state, profile, wl) == []
        assert res.stats.objective >= exact.stats.objective * (1 - 1e-9)
        if res.stats.lower_bound is not None:
            assert res.stats.lower_bound <= exact.stats.objective * (1 + 1e-9)
        if res.optimal:
            assert close(res.stats.objective, exact.stats.objective)


@FEW
@given(SEEDS)
def test_same_input_same_plan(seed: int) -> None:
    state, profile, wl = small_instance(random.Random(seed), max_nodes=7)
    for opts in (SolverOptions(), PRUNED, SCREENED):
        a = solve(state, profile, wl, [ENTRY], options=opts)
        b = solve(state, profile, wl, [ENTRY], options=opts)
        assert a == b


@FEW
@given(SEEDS)
def test_placement_keeps_cuts_and_is_optimal(seed: int) -> None:
    rng = random.Random(seed)
    state, profile, wl = small_instance(rng)
    first = solve(state, profile, wl, [ENTRY], weights=W)
    if first.plan is None:
        return
    # The cluster changes: every node's background load moves.
    nodes = tuple(
        type(n)(**{**{f: getattr(n, f) for f in n.__slots__}, "utilization": rng.random()})
        for n in state.nodes
    )
    moved = ClusterState(nodes, state.links)
    res = solve(moved, profile, wl, [ENTRY], Mode.PLACEMENT, W, first.plan)
    assert res.current_cost is not None and res.current_cost.feasible
    assert res.plan is not None, res.reason  # the current plan itself still fits
    assert violations(res.plan, moved, profile, wl) == []
    old, new = first.plan.routes[0], res.plan.routes[0]
    assert new.cuts == old.cuts
    assert new.segments[0].end == old.segments[0].end
    milp = solve_milp(moved, profile, wl, [ENTRY], W, mode=Mode.PLACEMENT, current=first.plan)
    assert milp.objective is not None and close(res.stats.objective, milp.objective)
    assert res.stats.objective <= res.current_cost.total * (1 + 1e-9)


@settings(max_examples=25, derandomize=True, deadline=None)
@given(SEEDS)
def test_two_routes_share_memory_and_stay_valid(seed: int) -> None:
    state, profile, wl = small_instance(random.Random(seed), max_nodes=5, max_layers=6)
    entries = [n.node_id for n in state.nodes if n.alive][:2]
    if len(entries) < 2:
        return
    res = solve(state, profile, wl, entries, weights=W)
    milp = solve_milp(state, profile, wl, entries, W, time_limit=20)
    if res.plan is None:
        assert res.reason
        return
    assert violations(res.plan, state, profile, wl) == []
    assert {r.entry for r in res.plan.routes} == set(entries)
    assert milp.objective is not None  # the planner's plan proves the MILP feasible
    assert res.stats.objective >= milp.objective * (1 - 1e-7)
    if res.optimal:
        assert close(res.stats.objective, milp.objective)
    if res.stats.lower_bound is not None and milp.optimal:
        assert res.stats.lower_bound <= milp.objective * (1 + 1e-7)


@FEW
@given(SEEDS)
def test_relaxation_bounds(seed: int) -> None:
    """Pure and numpy relaxations agree; relaxation <= Lagrangian <= exact optimum."""
    state, profile, wl = small_instance(random.Random(seed))
    prob = Instance(state, profile, wl, W, 1).route_problem(ENTRY) if state.nodes[0].alive else None
    assert prob is not None
    pure, path = relaxed_route(prob)
    vec, _ = relaxed_bound(prob)
    assert (pure == vec) or close(pure, vec)
    exact = dssr(prob, max_critical=64, max_states=10**9)
    if exact.path is None:
        return
    assert close(path_cost(prob, exact.path), exact.cost)
    assert path is not None and pure <= exact.cost * (1 + 1e-12)
    prices = lagrangian(prob, exact.cost, iterations=20)
    assert pure * (1 - 1e-9) <= prices.bound <= exact.cost * (1 + 1e-9)


def test_imbalance_step_only_lowers_the_total() -> None:
    rng = random.Random(3)
    for _ in range(20):
        state, profile, wl = small_instance(rng)
        wl = Workload(**{**{f: getattr(wl, f) for f in wl.__slots__}, "requests_per_s": 5.0})
        plain = solve(state, profile, wl, [ENTRY], weights=Weights(beta=0.0))
        balanced = solve(state, profile, wl, [ENTRY], weights=Weights(beta=1.0))
        if plain.plan is None:
            assert balanced.plan is None
            continue
        assert balanced.plan is not None
        assert violations(balanced.plan, state, profile, wl) == []
        from edgesplit.core.cost import evaluate

        plain_total = evaluate(plain.plan, state, profile, wl, Weights(beta=1.0)).total
        assert balanced.cost.total <= plain_total * (1 + 1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_heuristic_tier_on_a_larger_cluster(seed: int) -> None:
    from edgesplit.core.planner_instances import profile_for, random_cluster

    rng = random.Random(seed)
    state = random_cluster(rng, 40)
    wl = Workload(privacy=Privacy.HIGH, privacy_depth=2)
    profile = profile_for(32)
    res = solve(state, profile, wl, [ENTRY], weights=W, options=SolverOptions(bound_work=10_000))
    assert res.plan is not None, res.reason
    assert res.stats.method == "screened" and res.gap is None
    assert violations(res.plan, state, profile, wl) == []
    full = solve(state, profile, wl, [ENTRY], weights=W)
    assert full.plan is not None and full.stats.lower_bound is not None
    assert res.stats.objective >= full.stats.lower_bound * (1 - 1e-9)


def test_heuristic_recall_against_the_exact_search() -> None:
    """On seeded instances of up to 7 nodes the heuristic tiers miss a feasible
    plan in at most 2 % and are worse than the exact search in at most 10 %.
    (Returning the seed search's first feasible route misses about 13 % and is
    worse in about 24 %: this test is what catches such a shortcut.)"""
    feasible = 0
    misses = {"pruned": 0, "screened": 0}
    worse = dict(misses)
    for seed in range(300):
        state, profile, wl = small_instance(random.Random(seed), max_nodes=7)
        exact = solve(state, profile, wl, [ENTRY], weights=W)
        if exact.plan is None:
            continue
        feasible += 1
        for name, opts in (("pruned", PRUNED), ("screened", SCREENED)):
            res = solve(state, profile, wl, [ENTRY], weights=W, options=opts)
            if res.plan is None:
                misses[name] += 1
            elif res.stats.objective > exact.stats.objective * (1 + 1e-9):
                worse[name] += 1
    assert feasible > 200
    for name, missed in misses.items():
        assert missed <= 0.02 * feasible, (name, missed, feasible)
        assert worse[name] <= 0.10 * feasible, (name, worse[name], feasible)


def _outside_the_seeds() -> tuple[ClusterState, ModelProfile, Workload]:
    """Four layers; the entry holds none. n1 and n2 are fast and close but hold
    one layer each, n3 and n4 hold everything but are slow and far. The seed
    search (entry + the best-scored node) and a pool of three nodes both hold
    no ring; the optimum needs four nodes."""
    from edgesplit.core.types import LayerCost, LinkState, NodeState, Trust

    layer = LayerCost(100, 1e9, 0)
    profile = ModelProfile("hand", (layer,) * 4, LayerCost(10, 1e6, 0), LayerCost(10, 1e8, 0),
                           1000, "hand")
    spec = {0: (20, 1e12, 0.001), 1: (100, 1e12, 0.001), 2: (100, 1e12, 0.001),
            3: (400, 1e11, 0.02), 4: (400, 1e11, 0.02)}
    nodes = tuple(NodeState(NodeId(f"n{i}"), Trust.TRUSTED, mem, speed)
                  for i, (mem, speed, _) in spec.items())
    links = tuple(LinkState(NodeId(f"n{a}"), NodeId(f"n{b}"), max(spec[a][2], spec[b][2]), 1e9)
                  for a in spec for b in spec if a != b)
    return ClusterState(nodes, links), profile, Workload(prompt_tokens=1, new_tokens=1,
                                                         kv_budget_tokens=1)


def test_heuristic_finds_an_optimum_that_needs_a_node_outside_the_seeds() -> None:
    state, profile, wl = _outside_the_seeds()
    exact = solve(state, profile, wl, [ENTRY], weights=W)
    assert exact.plan is not None and exact.optimal
    used = set(exact.plan.routes[0].nodes)
    assert len(used) == 4  # more than the seeds (2) and the first pool (3) hold
    res = solve(state, profile, wl, [ENTRY], weights=W, options=PRUNED)
    assert res.plan is not None, res.reason
    assert violations(res.plan, state, profile, wl) == []
    assert close(res.stats.objective, exact.stats.objective)
