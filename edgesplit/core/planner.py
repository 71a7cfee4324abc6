"""The split reviser's decision: cut points and a node per segment, per route.

``solve`` is the public entry point (docs/architecture.md §6, the paper's equations 7-9);
``edgesplit.core.cost.evaluate`` prices an existing plan.

What is optimised, and what is certified
----------------------------------------
The solvers minimise the *planning objective*
``alpha * mean decode-step latency + gamma * privacy penalty`` (``cost``)
under the hard constraints: each layer once per route, in order; the route's
shape (the entry runs ``embed``, a prefix of layers and ``head``; every other
node at most one segment; the ring returns to the entry); memory per node
across routes (shared weights once); links; the privacy pins for
``Privacy.HIGH``. That objective is additive along a route, so the dynamic
programs carry it exactly, and ``edgesplit.core.milp`` models the same
objective to certify it. ``SolveResult.optimal`` and ``gap`` speak of it.

The imbalance term (``beta * utilisation spread``, a max-minus-min over the
cluster) is not carried by any route program. When ``beta > 0`` a heuristic
balance step re-solves with every node's utilisation capped at a few levels
below the plan's peak and keeps a capped plan if it lowers ``total`` by more
than ``balance_margin``; such a plan trades planning objective for balance,
so its ``gap`` measures that trade and ``optimal`` is false.

Method, per route (``planner_search``)
--------------------------------------
The relaxation without the one-segment-per-node rule (``planner_dp``) is
solved forward and backward: every node gets a lower bound on any route
through it, every state a lower bound on its completion. DSSR
(``planner_dp.dssr``) then finds the best route without repeats: it solves
the relaxation, remembers (in a bitmask) the nodes its best route repeats,
and solves again until no node repeats.

* up to ``candidates`` alive nodes: DSSR over all of them. Exact.
* up to ``pool``: DSSR under a cost target that starts just above the
  relaxation's optimum and grows after every round that proves no route
  within it; states and nodes that cannot finish within it are pruned. Exact.
* beyond: DSSR over ``candidates`` seed nodes (close to the entry, fast)
  gives a cost ``ub``; DSSR over the ``pool`` nodes with the best bounds,
  pruned by ``ub``, gives the answer. A route through a node left out costs
  at least that node's bound, so ``lower_bound = min(final search, best
  bound left out)``; ``optimal`` when that reaches the answer.
* when ``cuts x nodes^2`` passes ``bound_work`` (e.g. 256 nodes, 128 layers),
  a screen first keeps ``screen_nodes`` nodes ranked by the relaxation on a
  coarse grid of cuts. No global bound then: ``gap`` is None.

DSSR's work is bounded (``max_critical``, ``max_states``): past either it
bans repeated nodes instead of remembering them, which still ends with a
valid route or none, but is no longer exact (``optimal`` false).

Replicas: with ``Workload.max_replicas`` above 1 and a one-route plan whose
steps would queue (``cost.queueing_s``) for more than ``replicate_above`` of
their own latency,
``_replicate`` gives every entry 2 .. ``max_replicas`` routes, each carrying
an equal share, placed in turn on nodes earlier replicas do not use, or
under utilisation caps, and keeps the plan with the lowest ``loaded_total``
(the total with queueing weighed at least at ``alpha``). Like the balance
step it is a heuristic; ``optimal`` then holds only if the replicas' mean
latency still meets the bound (equal replicas on equal nodes do).

Several routes (one per entry) are solved alone first; if they fit together
the union is the answer (the sum of their bounds a bound). Otherwise they are
placed in order, each in what the others leave (layers another route holds on
a node cost only their KV there), then improved for ``rounds`` rounds.

Same inputs, same plan: no clock is read unless one is passed in, no
randomness is used, ties break on node order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from edgesplit.core.cost import evaluate, infeasible, memory_use, objective
from edgesplit.core.planner_problem import EMPTY, Instance, Occupancy
from edgesplit.core.planner_search import Job, Outcome, SolverOptions, solve_route
from edgesplit.core.trust import trusts
from edgesplit.core.types import (
    ClusterState,
    CostBreakdown,
    Epoch,
    Mode,
    ModelProfile,
    NodeId,
    Plan,
    Privacy,
    Route,
    Weights,
    Workload,
)

__all__ = ["SolveResult", "SolverOptions", "SolverStats", "solve"]

INF = math.inf
DEFAULT_WEIGHTS = Weights()
DEFAULT_OPTIONS = SolverOptions()
FIRST_EPOCH = Epoch(0)


@dataclass(frozen=True, slots=True)
class SolverStats:
    method: str  # "exact", "pruned", "banned", "screened", "+shared"; "infeasible"
    elapsed_s: float | None  # only when the caller passed a clock
    objective: float  # planning objective of the plan (inf if none)
    lower_bound: float | None  # proven bound on the planning objective; None: unknown
    iterations: int = 0  # DSSR rounds, all routes
    states: int = 0  # DP states expanded, all routes
    candidates: int = 0  # nodes the final search could use (largest over routes)


@dataclass(frozen=True, slots=True)
class SolveResult:
    plan: Plan | None
    cost: CostBreakdown  # of ``plan`` (infeasible with the reason if there is none)
    current_cost: CostBreakdown | None  # of ``current`` under the same state
    stats: SolverStats
    optimal: bool  # the planning objective is proven minimal
    gap: float | None  # (objective - lower_bound) / lower_bound; None without a plan
    reason: str = ""  # why there is no plan; empty otherwise


def solve(
    state: ClusterState,
    profile: ModelProfile,
    workload: Workload,
    entries: Sequence[NodeId],
    mode: Mode = Mode.RESPLIT,
    weights: Weights = DEFAULT_WEIGHTS,
    current: Plan | None = None,
    epoch: Epoch = FIRST_EPOCH,
    *,
    options: SolverOptions = DEFAULT_OPTIONS,
    clock: Callable[[], float] | None = None,
) -> SolveResult:
    """Best plan for ``entries`` under ``state`` (see the module doc for guarantees)."""
    start = clock() if clock is not None else None
    current_cost = (
        evaluate(current, state, profile, workload, weights) if current is not None else None
    )
    inst = Instance(state, profile, workload, weights, len(entries))
    why = _precheck(inst, state, entries, mode, current)
    job = Job(inst, tuple(entries), mode, current, options)
    outcomes: list[Outcome] = [] if why else _solve_routes(job)
    why = why or next((o.reason for o in outcomes if o.route is None), "")
    if why:
        stats = SolverStats("infeasible", _since(clock, start), INF, INF)
        return SolveResult(None, infeasible(why), current_cost, stats, False, None, why)
    plan = Plan(epoch, profile.digest, tuple(o.route for o in outcomes if o.route is not None))
    cost = evaluate(plan, state, profile, workload, weights)
    method = "+".join(sorted({o.method for o in outcomes}))
    if weights.beta > 0 and options.balance_steps > 0:
        balanced = _balance(job, state, epoch, cost)
        if balanced is not None:
            plan, cost = balanced
            method += "+balanced"
    replicated = _replicate(job, state, epoch, cost)
    if replicated is not None:
        plan, cost = replicated
        method += "+replicas"
    value = objective(cost, weights)
    bounds = [o.lower_bound for o in outcomes]
    lower = None if None in bounds else min(sum(b for b in bounds if b is not None), value)
    # Relative slack: evaluate() and the DP sum the same terms in different orders.
    optimal = all(o.optimal for o in outcomes) and lower is not None and value <= lower * (1 + 1e-9)
    gap = None if lower is None else 0.0 if optimal else (value - lower) / lower
    stats = SolverStats(
        method=method,
        elapsed_s=_since(clock, start),
        objective=value,
        lower_bound=lower,
        iterations=sum(o.iterations for o in outcomes),
        states=sum(o.states for o in outcomes),
        candidates=max(o.candidates for o in outcomes),
    )
    return SolveResult(plan, cost, current_cost, stats, optimal, gap)


def _balance(
    job: Job, state: ClusterState, epoch: Epoch, cost: CostBreakdown
) -> tuple[Plan, CostBreakdown] | None:
    """Trade latency for a smaller utilisation spread when that lowers the total.

    Re-solves with every node's utilisation capped at ``balance_steps`` levels
    between the plan's peak and the lowest peak possible; returns the plan
    with the lowest total if it beats ``cost`` by ``balance_margin``, else
    None. A heuristic: see the module doc.
    """
    inst = job.inst
    peak = max(u for _, u in cost.per_node_utilization)
    floor = max(n.utilization for n in inst.nodes)
    for entry in job.entries:
        node = inst.nodes[inst.index[entry]]
        _, embed_s, head_s = inst.times[inst.index[entry]]
        floor = max(floor, node.utilization + (embed_s + head_s) * inst.load_per_second)
    best: tuple[Plan, CostBreakdown] | None = None
    steps = job.opts.balance_steps
    for k in range(1, steps + 1):
        cap = peak - (peak - floor) * k / (steps + 1)
        outcomes = _solve_routes(replace(job, max_util=cap))
        if any(o.route is None for o in outcomes):
            break  # lower caps only remove more routes
        plan = Plan(epoch, inst.profile.digest, tuple(o.route for o in outcomes if o.route))
        c = evaluate(plan, state, inst.profile, inst.workload, inst.weights)
        if c.total < (best[1].total if best else cost.total * (1 - job.opts.balance_margin)):
            best = (plan, c)
    return best


def _replicate(
    job: Job, state: ClusterState, epoch: Epoch, cost: CostBreakdown
) -> tuple[Plan, CostBreakdown] | None:
    """More routes per entry when the offered load makes the plan's steps queue.

    With ``count`` replicas per entry every route carries ``1 / count`` of its
    entry's requests; replicas are placed one after another in what the
    others leave, either on nodes no earlier replica of the entry uses or
    with every node's utilisation capped (``replica_caps``), so a replica
    that would pile onto a busy node goes elsewhere. Returns the plan
    with the lowest ``loaded_total`` (queueing included) if it beats ``cost`` by
    ``balance_margin``, else None. Replicas may trade the planning objective
    (a replica may be slower) for capacity.
    """
    inst, opts = job.inst, job.opts
    wl = inst.workload
    if wl.max_replicas <= 1 or not cost.feasible:
        return None
    if cost.queueing_s <= cost.mean_latency_s * opts.replicate_above:
        return None
    best: tuple[Plan, CostBreakdown] | None = None

    def loaded(c: CostBreakdown) -> float:
        return loaded_total(c, inst.weights)

    for count in range(2, wl.max_replicas + 1):
        wide = Instance(state, inst.profile, wl, inst.weights, len(job.entries) * count)
        tries = [(replace(job, inst=wide), True)]
        tries += [(replace(job, inst=wide, max_util=cap), False) for cap in opts.replica_caps]
        for rjob, disjoint in tries:
            routes = _place_replicas(rjob, count, disjoint)
            if routes is None:
                continue
            plan = Plan(epoch, inst.profile.digest, tuple(routes))
            c = evaluate(plan, state, inst.profile, wl, inst.weights)
            if c.feasible and loaded(c) < (loaded(best[1]) if best
                                           else loaded(cost) * (1 - opts.balance_margin)):
                best = (plan, c)
    return best


def loaded_total(cost: CostBreakdown, weights: Weights) -> float:
    """The total with queueing weighed at least at ``alpha``: what the replica
    step compares, whatever ``delta`` the objective gives queueing."""
    return cost.total + max(0.0, weights.alpha - weights.delta) * cost.queueing_s


def _place_replicas(job: Job, count: int, disjoint: bool) -> list[Route] | None:
    """``count`` routes per entry, each placed in what the earlier ones leave;
    ``disjoint``: a replica may not use a node (but its entry) that an earlier
    replica of its entry uses."""
    inst = job.inst
    placed: list[Route] = []
    for replica in range(count):
        for entry in job.entries:
            occ = inst.occupancy(placed)
            if disjoint:
                taken = {n for r in placed if r.entry == entry for n in r.nodes} - {entry}
                full = {n: inst.nodes[inst.index[n]].memory_bytes + 1 for n in taken}
                occ = Occupancy({**occ.used, **full}, occ.held, occ.load)
            o = solve_route(job, entry, occ)
            if o.route is None:
                return None
            placed.append(replace(o.route, replica=replica))
    return placed


def _since(clock: Callable[[], float] | None, start: float | None) -> float | None:
    return clock() - start if clock is not None and start is not None else None


def _precheck(
    inst: Instance,
    state: ClusterState,
    entries: Sequence[NodeId],
    mode: Mode,
    current: Plan | None,
) -> str:
    """A clear reason for inputs that cannot have a plan, before any search."""
    if not entries:
        return "no entry nodes given"
    if len(set(entries)) != len(entries):
        return "an entry node is listed twice"
    if inst.L == 0:
        return f"model {inst.profile.name} has no layers"
    for entry in entries:
        if entry not in inst.index:
            known = any(n.node_id == entry for n in state.nodes)
            return f"entry {entry} is {'dead' if known else 'not in the cluster'}"
        node = inst.nodes[inst.index[entry]]
        if inst.workload.privacy is Privacy.HIGH and not trusts(node, entry):
            return f"privacy=high: entry {entry} is untrusted and must hold embed and head"
        overhead = inst.entry_overhead(inst.index[entry], EMPTY)
        if overhead > node.memory_bytes:
            return f"entry {entry} cannot hold embed and head ({overhead} bytes, has {node.memory_bytes})"
        if inst.workload.privacy is Privacy.HIGH and inst.depth:
            pinned = sum(inst.weight[i] + inst.kv[i] for i in range(inst.depth))
            room = sum(
                n.memory_bytes - (overhead if n.node_id == entry else 0)
                for n in inst.nodes
                if trusts(n, entry)
            )
            if room < pinned:
                return (
                    f"privacy=high: no nodes trusted by {entry} can hold the pinned layers "
                    f"0..{inst.depth - 1} ({pinned} bytes, trusted room {room})"
                )
        if mode is Mode.PLACEMENT:
            if current is None or current.route_for(entry) is None:
                return (
                    f"placement keeps the current cuts, but there is no current route for {entry}"
                )
            segs = current.route_for(entry).segments  # type: ignore[union-attr]
            if segs[-1].end != inst.L:
                return f"current route of {entry} does not cover the model's {inst.L} layers"
    need = sum(inst.weight) + sum(inst.kv) + inst.entry_overhead(inst.index[entries[0]], EMPTY)
    have = sum(n.memory_bytes for n in inst.nodes)
    if have < need:
        return f"total memory of alive nodes ({have} bytes) is below what the model needs ({need})"
    return ""


def _solve_routes(job: Job) -> list[Outcome]:
    """Each route alone; if they do not fit together, in order with improvement rounds."""
    inst, entries = job.inst, job.entries
    alone = [solve_route(job, e, EMPTY) for e in entries]
    if len(entries) == 1 or any(o.route is None for o in alone):
        return alone
    routes = [o.route for o in alone if o.route is not None]
    if _fits(inst, routes) and job.max_util is None:
        return alone
    placed: list[Outcome] = []
    for k, entry in enumerate(entries):
        o = solve_route(job, entry, inst.occupancy([p.route for p in placed if p.route]))
        if o.route is None:
            o.reason = (
                f"routes do not fit together: {o.reason} once {', '.join(entries[:k])} placed"
            )
            return [o]
        placed.append(o)
    for _ in range(job.opts.rounds):
        improved = False
        for k, entry in enumerate(entries):
            others = [o.route for j, o in enumerate(placed) if j != k and o.route]
            o = solve_route(job, entry, inst.occupancy(others))
            if o.route is not None and o.cost < placed[k].cost - 1e-12:
                placed[k], improved = o, True
        if not improved:
            break
    for o, a in zip(placed, alone, strict=True):
        # The bound of a route alone (all memory free) still bounds it in company.
        o.lower_bound, o.optimal = a.lower_bound, False
        o.method = o.method + "+shared"
    return placed


def _fits(inst: Instance, routes: Sequence[Route]) -> bool:
    use = memory_use(routes, inst.profile, inst.workload)
    return all(use[n] <= inst.nodes[inst.index[n]].memory_bytes for n in use)
