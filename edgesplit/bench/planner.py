"""``edgesplit bench planner``: solve time, optimality and gains over baselines.

Random heterogeneous clusters (``edgesplit.core.planner_instances``, seeded):
node classes from an A6000 (48 GB) to a Jetson (10x slower per layer) and
mini PCs, a full mesh of links log-uniform from 1 to 1000 Mbit/s with 1-40 ms
RTT; node ``n0`` is the trusted entry; half the workloads are
``privacy=high`` (pinning 0-2 layers). Four families: ``n8_l32`` (Llama-2-7B fp16),
``n16_l80`` and ``n64_l80`` (a 70B shape in int8), ``n256_l128`` (a
128-layer 70B-wide model in int4).

* ``exact_matches_milp_fraction``: on ``n8_l32``, the planner's objective
  equals HiGHS's proven optimum (relative 1e-6), over instances HiGHS proved.
* ``heuristic_gap_p95``: on the larger families, ``objective / reference - 1``
  where the reference is HiGHS's proven optimum (``n16_l80``, within
  ``--milp-time-limit``), else the exact DP's optimum (DSSR over all nodes,
  pruned by the planner's cost, within ``--exact-states``), else the best
  proven lower bound (relaxation, Lagrangian prices, HiGHS's dual bound).
  ``details`` says which reference each family used.
* ``solve_ms_p95``: wall time of ``solve`` per family (this machine; other
  load on it shows up here).
* ``vs_baselines``: mean over instances of baseline decode-step latency /
  planner decode-step latency, where both are feasible (``details`` counts
  the infeasible ones).

Weights are ``alpha=1, beta=0, gamma=10``: the planning objective (latency +
privacy), so the balance step is off and the figures are about the solver.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import time
from dataclasses import dataclass
from typing import Any

from edgesplit.core.baselines import BASELINES
from edgesplit.core.cost import evaluate
from edgesplit.core.planner import solve
from edgesplit.core.planner_dp import dssr, relax_both_ways
from edgesplit.core.planner_instances import profile_for, random_cluster, random_workload
from edgesplit.core.planner_problem import Instance
from edgesplit.core.types import ClusterState, ModelProfile, NodeId, Weights, Workload

WEIGHTS = Weights(alpha=1.0, beta=0.0, gamma=10.0)
ENTRY = NodeId("n0")


@dataclass(frozen=True)
class Family:
    name: str
    nodes: int
    layers: int
    count: int
    quick: int


FAMILIES = (
    Family("n8_l32", 8, 32, 30, 5),
    Family("n16_l80", 16, 80, 8, 2),
    Family("n64_l80", 64, 80, 10, 2),
    Family("n256_l128", 256, 128, 6, 1),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="a few instances (seconds)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random instances")
    parser.add_argument("--png", default="", help="also draw solve time against cluster size "
                                                 "into this PNG")
    parser.add_argument(
        "--milp-time-limit", type=float, default=None, help="seconds per HiGHS run (15; quick 5)"
    )
    parser.add_argument(
        "--exact-states",
        type=int,
        default=None,
        help="state budget of the exact reference DP (3e6; quick: 0 = bounds only)",
    )


def _p95(xs: list[float]) -> float | None:
    if not xs:
        return None
    ordered = sorted(xs)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def _reference(
    state: ClusterState,
    profile: ModelProfile,
    wl: Workload,
    value: float,
    milp_limit: float | None,
    exact_states: int,
) -> tuple[float, str]:
    """(reference, its kind) for the planner's objective ``value`` on one instance."""
    from edgesplit.core.milp import lagrangian_bound, relaxed_bound, solve_milp

    dual = None
    if milp_limit is not None:
        m = solve_milp(state, profile, wl, [ENTRY], WEIGHTS, time_limit=milp_limit)
        if m.optimal and m.objective is not None:
            return m.objective, "milp"
        dual = m.bound
    prob = Instance(state, profile, wl, WEIGHTS, 1).route_problem(ENTRY)
    if exact_states > 0:
        ub = value * (1 + 1e-9)
        relaxed = relax_both_ways(prob, ub)
        res = dssr(prob, max_critical=64, max_states=exact_states, ub=ub, bounds=relaxed)
        if res.complete:
            return (res.cost if res.path is not None else value), "exact_dp"
    lower = [relaxed_bound(prob)[0], lagrangian_bound(prob, value)]
    if dual is not None:
        lower.append(dual)
    return max(lower), "lower_bound"


def run(args: argparse.Namespace) -> dict[str, Any]:
    from edgesplit.cli.progress import progress

    quick = bool(getattr(args, "quick", False))
    milp_limit = args.milp_time_limit if args.milp_time_limit is not None else (5 if quick else 15)
    exact_states = (
        args.exact_states if args.exact_states is not None else (0 if quick else 3_000_000)
    )
    rng = random.Random(args.seed)
    # Warm the code paths so the first timed solve does not pay for imports.
    warm = random_cluster(random.Random(-1), 8)
    solve(warm, profile_for(32), Workload(), [ENTRY], weights=WEIGHTS)

    matches, proven = 0, 0
    gaps: list[float] = []
    unproven_gaps: list[float] = []
    solve_ms: dict[str, list[float]] = {}
    ratios: dict[str, list[float]] = {name: [] for name in BASELINES}
    details: dict[str, Any] = {}
    instances = 0
    # Progress on stderr; closed below (an error ends the process, and the bar with it).
    bar = contextlib.ExitStack()
    advance = bar.enter_context(progress(
        "planner", sum(fam.quick if quick else fam.count for fam in FAMILIES)))
    for fam in FAMILIES:
        profile = profile_for(fam.layers)
        times: list[float] = []
        fam_gaps: list[float] = []
        kinds: dict[str, int] = {}
        infeasible_baselines = {name: 0 for name in BASELINES}
        fam_ratios: dict[str, list[float]] = {name: [] for name in BASELINES}
        planner_infeasible = 0
        for _ in range(fam.quick if quick else fam.count):
            # A full mesh: the ring baselines (exo, Petals) pass every node, and with
            # missing links they would nearly always be infeasible rather than slow.
            state, wl = random_cluster(rng, fam.nodes, missing_links=0.0), random_workload(rng)
            instances += 1
            advance(description=f"planner {fam.name}")
            t0 = time.perf_counter()
            res = solve(state, profile, wl, [ENTRY], weights=WEIGHTS)
            times.append((time.perf_counter() - t0) * 1000)
            if res.plan is None:
                planner_infeasible += 1
                continue
            value = res.stats.objective
            for name, baseline in BASELINES.items():
                b = baseline(state, profile, wl, [ENTRY])
                cost = evaluate(b.plan, state, profile, wl, WEIGHTS) if b.plan else None
                if cost is None or not cost.feasible:
                    infeasible_baselines[name] += 1
                    continue
                fam_ratios[name].append(cost.latency_s / res.cost.latency_s)
            if fam.nodes <= 8:
                from edgesplit.core.milp import solve_milp

                m = solve_milp(state, profile, wl, [ENTRY], WEIGHTS, time_limit=milp_limit)
                if m.optimal and m.objective is not None:
                    proven += 1
                    matches += abs(value - m.objective) <= 1e-6 * max(abs(m.objective), 1e-12)
                continue
            limit = milp_limit if fam.nodes <= 16 else None
            ref, kind = _reference(state, profile, wl, value, limit, exact_states)
            kinds[kind] = kinds.get(kind, 0) + 1
            gap = max(0.0, value / ref - 1.0)
            fam_gaps.append(gap)
            if not res.optimal:
                unproven_gaps.append(gap)
        solve_ms[fam.name] = times
        gaps += fam_gaps
        for name in BASELINES:
            ratios[name] += fam_ratios[name]
        details[fam.name] = {
            "instances": len(times),
            "planner_infeasible": planner_infeasible,
            "solve_ms_median": sorted(times)[len(times) // 2] if times else None,
            "gap_p95": _p95(fam_gaps),
            "gap_max": max(fam_gaps) if fam_gaps else None,
            "reference": kinds,
            "baseline_infeasible": infeasible_baselines,
            "vs_baselines": {k: (sum(v) / len(v) if v else None) for k, v in fam_ratios.items()},
        }
    bar.close()
    if getattr(args, "png", ""):
        from edgesplit.cli.plots import solve_time_png

        solve_time_png(args.png, [(fam.nodes, fam.layers, solve_ms[fam.name])
                                  for fam in FAMILIES if fam.name in solve_ms])
    return {
        "instances": instances,
        "exact_matches_milp_fraction": matches / proven if proven else None,
        "exact_milp_proven": proven,
        "heuristic_gap_p95": _p95(gaps),
        "heuristic_gap_p95_unproven": _p95(unproven_gaps),
        "solve_ms_p95": {k: _p95(v) for k, v in solve_ms.items()},
        "vs_baselines": {k: (sum(v) / len(v) if v else None) for k, v in ratios.items()},
        "weights": {"alpha": WEIGHTS.alpha, "beta": WEIGHTS.beta, "gamma": WEIGHTS.gamma},
        "quick": quick,
        "details": details,
    }
