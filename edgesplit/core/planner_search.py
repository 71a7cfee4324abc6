"""Search for one route: the tiers of ``planner`` (exact, pruned, screened).

``solve_route`` picks the tier from the instance size, builds the index-form
problem (``planner_problem``) and runs the dynamic programs (``planner_dp``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

from edgesplit.core.planner_dp import Path, Relaxed, RouteProblem, dssr, relax_both_ways
from edgesplit.core.planner_problem import Instance, Occupancy
from edgesplit.core.types import Mode, NodeId, Plan, Route

INF = math.inf


@dataclass(frozen=True, slots=True)
class SolverOptions:
    candidates: int = 8  # nodes of the seed search (all of them if no more: exact)
    pool: int = 24  # nodes of the final search, best relaxed bounds first (exact up to it)
    pool_growth: int = 2  # times the pool doubles when it holds no feasible route
    target_step: float = 0.03  # first cost target above the relaxed optimum, relative
    target_growth: float = 2.0  # the step grows by this factor after each empty round
    max_critical: int = 8  # DSSR remembers at most this many nodes (2**k states per cut)
    max_states: int = 400_000  # DSSR work bound; past it repeated nodes are banned
    bound_work: int = 400_000  # cuts x nodes^2 above which nodes are screened first
    screen_nodes: int = 40  # nodes kept by the screen
    coarse_cuts: int = 16  # cut grid of the screen
    rounds: int = 2  # improvement rounds when several routes compete for memory
    balance_steps: int = 3  # utilisation caps tried when beta > 0 (each costs a solve)
    balance_margin: float = 0.01  # a capped plan must lower the total by this fraction
    # Replicas (Workload.max_replicas > 1) are tried once a step would queue
    # for more than this fraction of its own latency (cost.queueing_s), with
    # every node's utilisation capped at each of ``replica_caps`` in turn.
    replicate_above: float = 0.5
    replica_caps: tuple[float, ...] = (0.9, 0.75, 0.6)


@dataclass(frozen=True, slots=True)
class Job:
    """What every route of one solve shares."""

    inst: Instance
    entries: tuple[NodeId, ...]
    mode: Mode
    current: Plan | None
    opts: SolverOptions
    max_util: float | None = None  # cap on every node's utilisation (balancing)


@dataclass(slots=True)
class Outcome:
    """One route's answer; ``path`` is over the full node index."""

    path: Path | None
    cost: float  # planning objective of the route (objective units)
    lower_bound: float | None  # None: not known (screened search)
    optimal: bool
    method: str
    iterations: int = 0
    states: int = 0
    candidates: int = 0
    route: Route | None = None
    reason: str = ""


def solve_route(job: Job, entry: NodeId, occ: Occupancy) -> Outcome:
    """One route for ``entry`` in what ``occ`` leaves free (see ``planner`` for the method)."""
    inst, opts = job.inst, job.opts
    positions: list[int] = list(range(inst.L + 1))
    entry_end = None
    placement = job.mode is Mode.PLACEMENT
    if placement:
        route = job.current.route_for(entry) if job.current is not None else None
        assert route is not None  # _precheck
        positions = sorted({0, inst.L, *(s.start for s in route.segments)})
        entry_end = positions.index(route.segments[0].end)
    build = partial(
        inst.route_problem,
        entry,
        placement=placement,
        entry_end=entry_end,
        occ=occ,
        max_util=job.max_util,
    )
    keep, bounded = list(range(inst.n)), True
    if len(positions) * inst.n * inst.n > opts.bound_work and inst.n > opts.pool:
        coarse = positions
        if not placement and len(positions) - 1 > opts.coarse_cuts:
            step = (len(positions) - 1) / opts.coarse_cuts
            coarse = sorted({positions[round(i * step)] for i in range(opts.coarse_cuts + 1)})
        keep = _screen(build(coarse), opts.screen_nodes)
        bounded = False
    out = _pruned(build(positions, keep=keep), opts)
    if not bounded:
        out.optimal, out.lower_bound = False, None
        out.method = "screened"
    if out.path is None:
        what = "placement of the current segments" if placement else "route"
        out.reason = (
            f"no feasible {what} for entry {entry}: memory, links"
            + (", utilisation cap" if job.max_util is not None else "")
            + " or privacy pins rule out every ring over the layers"
        )
    else:
        out.route = inst.route(positions, [(keep[w], a, b) for w, a, b in out.path])
    return out


def _screen(coarse: RouteProblem, size: int) -> list[int]:
    """The ``size`` most promising nodes, ranked on a coarse grid of cuts.

    Cutting only at a few places restricts the relaxation, so its per-node
    values are estimates, not bounds; they rank nodes well enough to keep the
    fine search small. The entry is always kept.
    """
    through = relax_both_ways(coarse).through
    e = coarse.entry
    ranked = sorted((through[w], w) for w in range(coarse.n) if w != e)
    return sorted([e] + [w for _, w in ranked[: size - 1]])


def _search(
    prob: RouteProblem,
    keep: list[int],
    ub: float,
    opts: SolverOptions,
    bounds: Relaxed | None = None,
    critical: set[int] | None = None,
) -> Outcome:
    """DSSR over the nodes ``keep`` for a route of cost <= ``ub``.

    ``lower_bound`` bounds every route over ``keep`` (inf: none exists, or
    none at or below ``ub``); ``optimal`` says the search was exact.
    """
    sub = prob if len(keep) == prob.n else prob.restrict(keep)
    crit = sum(1 << i for i, w in enumerate(keep) if critical and w in critical)
    res = dssr(
        sub,
        max_critical=opts.max_critical,
        max_states=opts.max_states,
        ub=ub,
        bounds=bounds,
        critical=crit,
    )
    if critical is not None:
        critical.update(w for i, w in enumerate(keep) if res.critical >> i & 1)
    out = Outcome(None, INF, res.lower_bound, res.complete, "exact", res.iterations, res.states)
    out.candidates = len(keep)
    if not res.complete:
        out.method = "banned"
    if res.path is not None:
        out.path, out.cost = [(keep[w], a, b) for w, a, b in res.path], res.cost
    return out


def _pruned(prob: RouteProblem, opts: SolverOptions) -> Outcome:
    """DSSR over the whole problem or its most promising nodes, pruned by relaxed bounds.

    The relaxation solved both ways gives every node a lower bound on any
    route through it and every state a bound on its completion.

    * up to ``candidates`` nodes: DSSR over all of them directly;
    * up to ``pool`` nodes: DSSR under a cost target that starts just above
      the relaxation's optimum and grows after every round that proves no
      route within it; every state that cannot finish within the target is
      pruned, and so is every node whose bound exceeds it. Exact.
    * beyond: DSSR over ``candidates`` seed nodes (close to the entry, fast)
      gives a route and its cost ``ub``; DSSR over the ``pool`` nodes with the
      best bounds, pruned by ``ub``, gives the answer.

    A route through a node left out costs at least that node's bound, so
    ``lower_bound = min(final search's bound, best bound left out)``.
    """
    n, k = prob.n, max(opts.candidates, 2)
    if n <= k:
        return _search(prob, list(range(n)), INF, opts)
    found = None
    if n <= opts.pool:
        found = _deepening(prob, opts)
    if found is None or (found[0].path is None and not found[0].optimal):
        found = _seeded(prob, opts)  # too many nodes, or the deepening gave up
    out, keep, bound, relaxed = found
    out.candidates = len(keep)
    left_out = min((t for w, t in enumerate(relaxed.through) if w not in keep), default=INF)
    out.lower_bound = min(INF if bound is None else bound, left_out, out.cost)
    out.optimal = out.path is not None and out.lower_bound >= out.cost
    out.method = "exact" if out.optimal else ("pruned" if out.path is not None else out.method)
    return out


# (outcome, nodes searched, lower bound over routes on those nodes, the relaxation)
_Found = tuple[Outcome, list[int], float | None, Relaxed]


def _seeded(prob: RouteProblem, opts: SolverOptions) -> _Found:
    """DSSR over the seed nodes for ``ub``, then over the ``pool`` best nodes under it."""
    n, e, m, k = prob.n, prob.entry, prob.m, max(opts.candidates, 2)
    score = sorted(
        (prob.hop[e][w] + prob.hop[w][e] + prob.prefix[w][m], w) for w in range(n) if w != e
    )
    first = _search(prob, sorted([e] + [w for _, w in score[: k - 1]]), INF, opts)
    relaxed = relax_both_ways(prob, first.cost)
    ranked = sorted((t, w) for w, t in enumerate(relaxed.through) if w != e and t < INF)
    size, growth, iterations, states = opts.pool, 0, first.iterations, first.states
    while True:
        keep = sorted([e] + [w for _, w in ranked[: size - 1]])
        out = _search(prob, keep, first.cost, opts, relaxed.restrict(keep))
        iterations, states = iterations + out.iterations, states + out.states
        # Nodes ranked one by one by their bound may not form a ring together
        # (memory, links): with no route at all, widen the pool a few times
        # before calling the instance infeasible.
        if out.path is not None or first.path is not None or size - 1 >= len(ranked) \
                or growth >= opts.pool_growth:
            break
        size, growth = size * 2, growth + 1
    # Nothing over keep at or below ub: every route over keep costs more than ub.
    bound = first.cost if out.path is None and out.optimal else out.lower_bound
    if out.path is None:
        out.path, out.cost = first.path, first.cost
    out.iterations, out.states = iterations, states
    return out, keep, bound, relaxed


def _deepening(prob: RouteProblem, opts: SolverOptions) -> _Found:
    """DSSR under a cost target that rises until a route fits under it."""
    e = prob.entry
    relaxed = relax_both_ways(prob)
    if relaxed.optimum == INF:
        return Outcome(None, INF, INF, True, "exact"), [e], INF, relaxed
    step = relaxed.optimum * opts.target_step
    target = relaxed.optimum + step
    critical: set[int] = set()  # what one round learns to remember, the next starts with
    iterations = states = 0
    while True:
        keep = [w for w, t in enumerate(relaxed.through) if w == e or t <= target]
        out = _search(prob, keep, target, opts, relaxed.restrict(keep), critical)
        iterations, states = iterations + out.iterations, states + out.states
        if out.path is not None or target == INF or not out.optimal:
            break
        # Nothing within the target: every route costs more. Raise it.
        step *= opts.target_growth
        target = relaxed.optimum + step if step < relaxed.optimum * 4 else INF
    out.iterations, out.states = iterations, states
    bound = target if out.path is None and out.optimal else out.lower_bound
    return out, keep, bound, relaxed
