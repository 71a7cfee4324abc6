"""Lagrangian prices: a lower bound tighter than the relaxation's.

The relaxation of ``planner_dp`` lets a route visit a node twice, and so use
its memory twice; on memory-tight clusters its bound can sit far below the
optimum. Pricing each node's memory and visits into the relaxation gives, for
any prices, a valid lower bound (weak duality), and a subgradient ascent
raises it. Benchmarks use it to certify large instances where neither HiGHS
nor the exact DP finishes in time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from edgesplit.core.planner_dp import Path, RouteProblem, relaxed_route

INF = math.inf

# (problem, memory prices, visit prices) -> relaxation value and route under those prices
Relax = Callable[[RouteProblem, Sequence[float], Sequence[float]], tuple[float, Path | None]]


@dataclass(frozen=True, slots=True)
class Prices:
    """Prices of the best Lagrangian bound found, and the bound itself."""

    bound: float
    memory: tuple[float, ...]  # per node, per unit of its capacity
    visits: tuple[float, ...]  # per node, per segment beyond the first

    @property
    def offset(self) -> float:
        """What the priced relaxation over-counts: subtract it from priced values."""
        return sum(self.memory) + sum(self.visits)


def priced(prob: RouteProblem, memory: Sequence[float], visits: Sequence[float]) -> RouteProblem:
    """``prob`` with node memory priced into layer costs and visits into hops."""
    e = prob.entry
    prefix = tuple(
        row
        if w == e or not memory[w]
        else tuple(c + memory[w] * b / prob.cap[w] for c, b in zip(row, prob.mem[w], strict=True))
        for w, row in enumerate(prob.prefix)
    )
    hop = tuple(
        tuple(h + (visits[w] if w != e else 0.0) for w, h in enumerate(row)) for row in prob.hop
    )
    return replace(prob, prefix=prefix, hop=hop)


def _relax_pure(
    prob: RouteProblem, memory: Sequence[float], visits: Sequence[float]
) -> tuple[float, Path | None]:
    return relaxed_route(priced(prob, memory, visits))


def lagrangian(
    prob: RouteProblem, ub: float, iterations: int = 20, relax: Relax = _relax_pure
) -> Prices:
    """Prices that tighten the relaxation towards routes without repeats that fit.

    For a non-entry node ``w``, ``memory[w]`` is charged per unit of its
    capacity used and ``visits[w]`` per segment on it; the relaxation's value
    under prices minus ``Prices.offset`` is a lower bound on every real route
    (a real route uses at most all of a node's capacity and one segment). A
    projected subgradient with Polyak steps towards ``ub`` (a known route's
    cost) moves the prices; the best bound is kept.
    """
    if not prob.mem or not prob.cap:
        raise ValueError("route problem carries no memory data")
    n, e = prob.n, prob.entry
    cap = [max(c, 1) for c in prob.cap]
    memory, visits = [0.0] * n, [0.0] * n
    best = Prices(-INF, tuple(memory), tuple(visits))
    theta, stall = 1.0, 0
    for _ in range(iterations):
        value, path = relax(prob, memory, visits)
        if path is None:
            return Prices(INF, tuple(memory), tuple(visits))  # no route even relaxed
        bound = value - sum(memory) - sum(visits)
        if not math.isfinite(ub):
            return Prices(bound, tuple(memory), tuple(visits))  # no target to step towards
        if bound > best.bound:
            best, stall = Prices(bound, tuple(memory), tuple(visits)), 0
        else:
            stall += 1
            if stall >= 3:
                theta, stall = theta / 2, 0
        used, seen = [0.0] * n, [0.0] * n
        for w, a, b in path[1:]:
            used[w] += (prob.mem[w][b] - prob.mem[w][a]) / cap[w]
            seen[w] += 1
        g_mem = [0.0 if w == e else used[w] - 1.0 for w in range(n)]
        g_vis = [0.0 if w == e else seen[w] - 1.0 for w in range(n)]
        g_mem = [g if g > 0 or memory[w] > 0 else 0.0 for w, g in enumerate(g_mem)]
        g_vis = [g if g > 0 or visits[w] > 0 else 0.0 for w, g in enumerate(g_vis)]
        norm = sum(g * g for g in g_mem) + sum(g * g for g in g_vis)
        if norm == 0.0 or ub - bound <= 1e-12 * max(abs(ub), 1.0):
            break  # the relaxed route is a real one, or the bound meets ub
        step = theta * (ub - bound) / norm
        memory = [max(0.0, p + step * g) for p, g in zip(memory, g_mem, strict=True)]
        visits = [max(0.0, p + step * g) for p, g in zip(visits, g_vis, strict=True)]
    return best
