"""Dynamic programs over one route: layer boundaries x nodes.

A route is the entry's prefix ``[0, P[a])`` (with embed and head), then
segments on distinct non-entry nodes covering ``[P[a], L)``, then the hop back
to the entry. ``RouteProblem`` holds everything in index form and in objective
units (already weighted), so the programs here know nothing of the domain.

* The relaxation drops the "a node holds at most one segment" rule (only an
  immediate repeat is forbidden). It is polynomial: O(m * n^2) with a
  sliding-window minimum over segment starts, so its optimum is a proven
  lower bound. ``relax_both_ways`` solves it forward and backward, giving
  every node a lower bound on any route through it and every state a lower
  bound on its completion.
* ``dssr``: decremental state-space relaxation (Righini & Salani 2008): solve
  the relaxation; while its best route visits some node twice, add those
  nodes to a critical set whose visits the state remembers (a bitmask) and
  solve again. The first route without repeats is optimal for the real
  problem; in the worst case the state is the full bitmask DP over
  (boundary, node, used nodes). States are pruned by a cost bound and by
  dominance (same boundary and node, a cheaper state with a subset of the
  critical nodes used).

Memory, utilisation caps and privacy pins enter as windows: ``lo[w][b]`` is
the first start a segment on ``w`` ending at ``b`` may have (all are monotone
in the range, so the window slides), ``hi[w][a]`` the last end.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from operator import add

INF = math.inf


@dataclass(frozen=True, slots=True)
class RouteProblem:
    """One route in index form; costs are in objective units."""

    n: int
    entry: int
    positions: tuple[int, ...]  # allowed layer boundaries, positions[0] = 0, positions[-1] = L
    prefix: tuple[tuple[float, ...], ...]  # prefix[w][a]: cost of layers [0, positions[a]) on w
    lo: tuple[tuple[int, ...], ...]  # lo[w][b]: first start index for a segment on w ending at b
    hi: tuple[tuple[int, ...], ...]  # hi[w][a]: last end index for a segment on w starting at a
    entry_ends: tuple[int, ...]  # indices where the entry's prefix may end
    hop: tuple[tuple[float, ...], ...]  # hop[v][w]; inf when v == w or no link
    constant: float  # embed and head on the entry
    mem: tuple[tuple[int, ...], ...] = ()  # mem[w][a]: bytes of layers [0, positions[a]) on w
    cap: tuple[int, ...] = ()  # bytes free on w for layers (the entry: after embed and head)

    @property
    def m(self) -> int:
        return len(self.positions) - 1

    def restrict(self, keep: list[int]) -> RouteProblem:
        """The same route over the nodes ``keep`` (must contain the entry), re-indexed."""
        return RouteProblem(
            n=len(keep),
            entry=keep.index(self.entry),
            positions=self.positions,
            prefix=tuple(self.prefix[w] for w in keep),
            lo=tuple(self.lo[w] for w in keep),
            hi=tuple(self.hi[w] for w in keep),
            entry_ends=self.entry_ends,
            hop=tuple(tuple(self.hop[v][w] for w in keep) for v in keep),
            constant=self.constant,
            mem=tuple(self.mem[w] for w in keep) if self.mem else (),
            cap=tuple(self.cap[w] for w in keep) if self.cap else (),
        )


# A route as (node index, start index, end index) per segment; the first is the entry.
Path = list[tuple[int, int, int]]


@dataclass(frozen=True, slots=True)
class DpResult:
    cost: float  # of ``path``; inf when none was found below the bound
    path: Path | None
    lower_bound: float  # proven for the problem given (inf: infeasible or >= ub)
    complete: bool  # the search finished: path is optimal or none exists below ub
    iterations: int
    states: int
    critical: int = 0  # the nodes remembered at the end (bitmask), to start a related search


@dataclass(frozen=True, slots=True)
class Relaxed:
    """The relaxation solved both ways; values above its ``ub`` are inf."""

    optimum: float
    through: list[float]  # per node: lower bound on any route using it
    backward: list[list[float]]  # [b][w]: bound on completing after w's segment ends at b
    arrival: list[list[float]]  # [b][w]: bound on completing after arriving into w at b

    def restrict(self, keep: list[int]) -> Relaxed:
        """The same bounds for ``RouteProblem.restrict(keep)`` (still valid there)."""
        return Relaxed(
            self.optimum,
            [self.through[w] for w in keep],
            [[row[w] for w in keep] for row in self.backward],
            [[row[w] for w in keep] for row in self.arrival],
        )


def path_cost(prob: RouteProblem, path: Path) -> float:
    """Objective of a path, recomputed from the problem (used by tests and repairs)."""
    total = prob.constant
    for k, (w, a, b) in enumerate(path):
        total += prob.prefix[w][b] - prob.prefix[w][a]
        if k:
            total += prob.hop[path[k - 1][0]][w]
    if len(path) > 1:
        total += prob.hop[path[-1][0]][prob.entry]
    return total


def _rest_bounds(prob: RouteProblem) -> list[float]:
    """rest[b]: a lower bound on the compute of layers [positions[b], L) on any nodes."""
    m, e = prob.m, prob.entry
    rest = [0.0] * (m + 1)
    others = [w for w in range(prob.n) if w != e] or [e]
    for b in range(m - 1, -1, -1):
        step = min(prob.prefix[w][b + 1] - prob.prefix[w][b] for w in others)
        rest[b] = rest[b + 1] + max(step, 0.0)
    return rest


def _forward(
    prob: RouteProblem,
    crit: int,
    banned: int,
    ub: float,
    rest: list[float],
    bounds: Relaxed | None = None,
) -> tuple[list[dict[int, list[float]]], list[dict[tuple[int, int], int]], int]:
    """F[b][T][w]: best cost with the last segment on w ending at b, T = critical nodes used.

    States that cannot finish within ``ub`` are dropped: ``rest[b]`` bounds any
    completion from b; ``bounds`` (the relaxation solved backward with the same
    ``ub``), if given, bounds completions per node. A state is also dropped
    when a cheaper one at the same (b, w) used a subset of its critical nodes
    (dominance). This is the hot loop of the planner.
    """
    tail = bounds.backward if bounds is not None else None
    n, m, e = prob.n, prob.m, prob.entry
    lo, hi = prob.lo, prob.hi
    at = list(zip(*prob.prefix))  # at[b][w] = prefix[w][b]
    cols = [tuple(prob.hop[v][w] for v in range(n)) for w in range(n)]
    F: list[dict[int, list[float]]] = [{} for _ in range(m + 1)]
    ptr: list[dict[tuple[int, int], int]] = [{} for _ in range(m + 1)]
    for a in prob.entry_ends:
        cost = prob.constant + at[a][e]
        if cost + (tail[a][e] if tail is not None else rest[a]) <= ub:
            F[a].setdefault(0, [INF] * n)[e] = cost
    # windows[T][w]: candidate starts (a, arrival - prefix) for a segment on w after T.
    windows: dict[int, dict[int, deque[tuple[int, float]]]] = {}
    states = 0
    for b in range(m + 1):
        if b:
            bound = tail[b] if tail is not None else [rest[b]] * n
            here, ptr_b, at_b = F[b], ptr[b], at[b]
            found: dict[int, list[tuple[float, int, int]]] = {}  # w -> (cost, T, start)
            for t, wins in windows.items():
                for w, dq in wins.items():
                    first = lo[w][b]
                    while dq and dq[0][0] < first:
                        dq.popleft()
                    if not dq:
                        continue
                    a, val = dq[0]
                    cost = at_b[w] + val
                    if cost + bound[w] > ub:
                        continue
                    t2 = t | (1 << w) if crit >> w & 1 else t
                    if not crit:
                        here.setdefault(t2, [INF] * n)[w] = cost
                        ptr_b[(w, t2)] = a
                        continue
                    found.setdefault(w, []).append((cost, t2, a))
            for w, options in found.items():
                if len(options) > 1:
                    options.sort()
                kept: list[int] = []
                for cost, t2, a in options:
                    if kept and _has_subset(kept, t2):
                        continue
                    kept.append(t2)
                    here.setdefault(t2, [INF] * n)[w] = cost
                    ptr_b[(w, t2)] = a
        if b == m:
            break
        targets = [w for w in range(n) if w != e and hi[w][b] > b and not banned >> w & 1]
        # An arrival into w at b still has w's segment and the rest to pay.
        limits = [ub - x for x in bounds.arrival[b]] if bounds is not None else [ub - rest[b]] * n
        at_b = at[b]
        for t, row in F[b].items():
            live = [v for v, x in enumerate(row) if x < INF]
            if not live:
                continue
            states += len(live)
            vals = [row[v] for v in live]
            full = len(live) == n
            blocked = crit & t
            wins = windows.setdefault(t, {})
            for w in targets:
                if blocked >> w & 1:
                    continue
                col = cols[w]
                g = min(map(add, vals, col if full else map(col.__getitem__, live)))
                if g > limits[w] or g == INF:
                    continue
                val = g - at_b[w]
                window = wins.get(w)
                if window is None:
                    window = wins[w] = deque()
                while window and window[-1][1] >= val:
                    window.pop()
                window.append((b, val))
    return F, ptr, states


def _has_subset(sets: list[int], t: int) -> bool:
    for k in sets:
        if k & ~t == 0:
            return True
    return False


def _best_end(prob: RouteProblem, F: list[dict[int, list[float]]]) -> tuple[float, int, int]:
    """(cost, T, last node) of the best complete route in F, (inf, 0, -1) if none."""
    e, best = prob.entry, (INF, 0, -1)
    back = [prob.hop[v][e] for v in range(prob.n)]
    for t in sorted(F[prob.m]):
        row = F[prob.m][t]
        for v in range(prob.n):
            cost = row[v] if v == e else row[v] + back[v]
            if cost < best[0]:
                best = (cost, t, v)
    return best


def _backtrack(
    prob: RouteProblem,
    F: list[dict[int, list[float]]],
    ptr: list[dict[tuple[int, int], int]],
    crit: int,
    t: int,
    w: int,
) -> Path:
    e, b, segs = prob.entry, prob.m, []
    while w != e:
        a = ptr[b][(w, t)]
        segs.append((w, a, b))
        t = t & ~(1 << w) if crit >> w & 1 else t
        row = F[a][t]
        sums = [row[v] + prob.hop[v][w] for v in range(prob.n)]
        w, b = sums.index(min(sums)), a
    segs.append((e, 0, b))
    segs.reverse()
    return segs


def _repeated(path: Path) -> int:
    seen, again = 0, 0
    for w, _, _ in path[1:]:
        if seen >> w & 1:
            again |= 1 << w
        seen |= 1 << w
    return again


def dssr(
    prob: RouteProblem,
    *,
    max_critical: int = 8,
    max_states: int = 400_000,
    ub: float = INF,
    bounds: Relaxed | None = None,
    critical: int = 0,
) -> DpResult:
    """Best route of cost <= ``ub`` (see the module doc), with bounded work.

    Exact (``complete=True``) unless the critical set would pass
    ``max_critical`` nodes or the states expanded pass ``max_states``; from
    then on, repeated nodes that no longer fit the critical set are banned
    (removed), which keeps each round as cheap as the last and ends in at most
    ``n`` rounds with a route without repeats, or none. The bound returned is
    then the relaxation's value before the first ban. ``bounds``, the
    relaxation solved both ways with the same ``ub`` (over these nodes or a
    superset), prunes states that cannot finish within ``ub``. ``critical``
    starts the search with nodes already remembered (from a related search).
    """
    rest = _rest_bounds(prob)
    crit, banned, iterations, states = critical, 0, 0, 0
    bound = INF
    while True:
        iterations += 1
        F, ptr, s = _forward(prob, crit, banned, ub, rest, bounds)
        states += s
        cost, t, last = _best_end(prob, F)
        if last < 0:
            return DpResult(
                INF, None, bound if banned else INF, not banned, iterations, states, crit
            )
        path = _backtrack(prob, F, ptr, crit, t, last)
        again = _repeated(path)
        if not again:
            if banned:
                return DpResult(cost, path, bound, False, iterations, states, crit)
            return DpResult(cost, path, cost, True, iterations, states, crit)
        room = max_critical - crit.bit_count() if states < max_states and not banned else 0
        if room >= again.bit_count():
            crit |= again
            continue
        if not banned:
            bound = cost
        # Remember the nodes carrying the most layers, ban the others.
        layers: dict[int, int] = {}
        for w, a, b in path[1:]:
            if again >> w & 1:
                layers[w] = layers.get(w, 0) + prob.positions[b] - prob.positions[a]
        order = sorted(layers, key=lambda w: (-layers[w], w))
        for w in order[: max(room, 0)]:
            crit |= 1 << w
        for w in order[max(room, 0) :]:
            banned |= 1 << w


def relaxed_forward(prob: RouteProblem, ub: float = INF) -> list[list[float]]:
    """F[b][w] of the relaxation (states above ``ub`` pruned to inf)."""
    F, _, _ = _forward(prob, 0, 0, ub, _rest_bounds(prob))
    return [F[b].get(0, [INF] * prob.n) for b in range(prob.m + 1)]


def relaxed_backward(
    prob: RouteProblem, fwd: list[list[float]]
) -> tuple[list[list[float]], list[list[float]]]:
    """(B, H) of the relaxation: B[a][v] is the best completion from boundary a
    after a segment on v; H[a][w] the best completion from arriving into w at a
    (w's segment included).

    B is computed only where ``fwd[a][v]`` is finite: those are the only
    states a route within the forward bound can pass.
    """
    n, m, e = prob.n, prob.m, prob.entry
    prefix, hi = prob.prefix, prob.hi
    B = [[INF] * n for _ in range(m + 1)]
    B[m] = [0.0 if v == e else prob.hop[v][e] for v in range(n)]
    arrival = [[INF] * n for _ in range(m + 1)]
    windows: list[deque[tuple[int, float]]] = [deque() for _ in range(n)]
    for a in range(m - 1, -1, -1):
        H = arrival[a]
        for w in range(n):
            if w == e:
                continue
            dq = windows[w]
            c, val = a + 1, prefix[w][a + 1] + B[a + 1][w]
            while dq and dq[-1][1] >= val:
                dq.pop()
            dq.append((c, val))
            last = hi[w][a]
            while dq and dq[0][0] > last:
                dq.popleft()
            if dq:
                H[w] = dq[0][1] - prefix[w][a]
        row = fwd[a]
        for v in range(n):
            if row[v] < INF:
                B[a][v] = min(map(add, prob.hop[v], H))
    return B, arrival


def relax_both_ways(prob: RouteProblem, ub: float = INF) -> Relaxed:
    """Relaxation forward and backward; values above ``ub`` come back as inf.

    A node whose value is inf cannot be on any route of cost <= ``ub``.
    """
    fwd = relaxed_forward(prob, ub)
    bwd, arrival = relaxed_backward(prob, fwd)
    through = [INF] * prob.n
    for b in range(prob.m + 1):
        f, g = fwd[b], bwd[b]
        for w in range(prob.n):
            if f[w] < INF:
                through[w] = min(through[w], f[w] + g[w])
    return Relaxed(through[prob.entry], through, bwd, arrival)


def relaxed_route(prob: RouteProblem, ub: float = INF) -> tuple[float, Path | None]:
    """Optimum of the relaxation and one route attaining it (repeats allowed)."""
    F, ptr, _ = _forward(prob, 0, 0, ub, _rest_bounds(prob))
    cost, t, last = _best_end(prob, F)
    if last < 0:
        return INF, None
    return cost, _backtrack(prob, F, ptr, 0, t, last)
