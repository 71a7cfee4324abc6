"""Certificates for the planner: a MILP of the same problem, and vectorised bounds.

Used by tests and benchmarks, never by ``solve``; scipy and numpy are imported
inside the functions so ``edgesplit.core`` stays light.

The MILP is written from the problem statement, not from the dynamic program:
binary ``x[r,l,v]`` (layer ``l`` of route ``r`` on node ``v``) and a flow
``p[r,k,u,v]`` between consecutive layers (``u`` runs layer ``k-1``, ``v``
runs layer ``k``); with integral ``x`` the flow is integral too, and its LP
relaxation is a shortest path, which keeps HiGHS quick. Constraints:

* each layer on one node; the entry runs a prefix and is never re-entered;
* each other node is entered at most once per route (one segment);
* no hop without a link; privacy pins (HIGH) as zero upper bounds;
* memory per node: weights once over routes (``y[l,v] >= x[r,l,v]``) plus
  the KV budget per route plus embed and head on entries;
* PLACEMENT: the flow may change node exactly at the current cuts.

Its objective is the planning objective (``alpha * mean latency + gamma *
privacy``), the one ``edgesplit.core.planner`` minimises.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from edgesplit.core.planner_bounds import Relax, lagrangian
from edgesplit.core.planner_dp import Path, RouteProblem
from edgesplit.core.planner_problem import EMPTY, Instance
from edgesplit.core.trust import trusts
from edgesplit.core.types import (
    ClusterState,
    Epoch,
    Mode,
    ModelProfile,
    NodeId,
    Plan,
    Privacy,
    Weights,
    Workload,
)

INF = math.inf
DEFAULT_WEIGHTS = Weights()
FIRST_EPOCH = Epoch(0)


@dataclass(frozen=True, slots=True)
class MilpResult:
    status: str  # "optimal", "time_limit", "infeasible", "error"
    objective: float | None  # of the best integer solution found
    bound: float | None  # HiGHS' proven lower bound
    plan: Plan | None

    @property
    def optimal(self) -> bool:
        return self.status == "optimal"


def _require_milp_extra() -> None:
    """numpy and scipy are the ``milp`` extra, not run-time dependencies: say so."""
    import importlib.util

    missing = [m for m in ("numpy", "scipy") if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(f"the MILP certifier needs {' and '.join(missing)}: "
                          "pip install 'edgesplit[milp]'")


def solve_milp(
    state: ClusterState,
    profile: ModelProfile,
    workload: Workload,
    entries: Sequence[NodeId],
    weights: Weights = DEFAULT_WEIGHTS,
    *,
    mode: Mode = Mode.RESPLIT,
    current: Plan | None = None,
    time_limit: float | None = None,
    epoch: Epoch = FIRST_EPOCH,
) -> MilpResult:
    """Solve the planning problem with HiGHS (see the module doc)."""
    _require_milp_extra()
    import numpy as np
    from scipy.optimize import Bounds, LinearConstraint, milp  # type: ignore[import-untyped]
    from scipy.sparse import coo_matrix  # type: ignore[import-untyped]

    inst = Instance(state, profile, workload, weights, len(entries))
    n, L, R = inst.n, inst.L, len(entries)
    if any(e not in inst.index for e in entries) or L == 0:
        return MilpResult("infeasible", None, None, None)
    nx, npk = L * n, max(L - 1, 0) * n * n
    per_route = nx + npk
    ny = L * n if R > 1 else 0
    nvar = R * per_route + ny

    def xi(r: int, l: int, v: int) -> int:
        return r * per_route + l * n + v

    def pi(r: int, k: int, u: int, v: int) -> int:  # k in 1..L-1
        return r * per_route + nx + (k - 1) * n * n + u * n + v

    def yi(l: int, v: int) -> int:
        return R * per_route + l * n + v

    c = np.zeros(nvar)
    ub = np.ones(nvar)
    integrality = np.zeros(nvar)
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    lo_b: list[float] = []
    hi_b: list[float] = []

    def add_row(terms: list[tuple[int, float]], lo: float, hi: float) -> None:
        r = len(lo_b)
        for col, val in terms:
            rows.append(r)
            cols.append(col)
            vals.append(val)
        lo_b.append(lo)
        hi_b.append(hi)

    high = workload.privacy is Privacy.HIGH
    constant = 0.0
    for r, entry in enumerate(entries):
        e = inst.index[entry]
        node_e = inst.nodes[e]
        _, embed_s, head_s = inst.times[e]
        constant += inst.scale * (embed_s + head_s)
        if not trusts(node_e, entry):
            if high:
                return MilpResult("infeasible", None, None, None)
            constant += 2 * weights.gamma
        for l in range(L):
            add_row([(xi(r, l, v), 1.0) for v in range(n)], 1.0, 1.0)
            for v, node in enumerate(inst.nodes):
                integrality[xi(r, l, v)] = 1
                pinned = l < inst.depth and not trusts(node, entry)
                c[xi(r, l, v)] = inst.scale * inst.times[v][0][l]
                if pinned and high:
                    ub[xi(r, l, v)] = 0.0
                elif pinned:
                    c[xi(r, l, v)] += weights.gamma
            if l:
                add_row([(xi(r, l, e), 1.0), (xi(r, l - 1, e), -1.0)], -INF, 0.0)
        for v in range(n):
            if v == e:
                continue
            c[xi(r, 0, v)] += inst.hop[e][v]
            c[xi(r, L - 1, v)] += inst.hop[v][e]
            if inst.hop[e][v] == INF:
                ub[xi(r, 0, v)], c[xi(r, 0, v)] = 0.0, 0.0
            if inst.hop[v][e] == INF:
                ub[xi(r, L - 1, v)], c[xi(r, L - 1, v)] = 0.0, 0.0
        cuts = _placement_cuts(inst, entry, current) if mode is Mode.PLACEMENT else None
        if cuts is not None:
            prefix_end = cuts[0]
            for l in range(L):
                if l < prefix_end:
                    add_row([(xi(r, l, e), 1.0)], 1.0, 1.0)
                else:
                    ub[xi(r, l, e)] = 0.0
        for k in range(1, L):
            for u in range(n):
                add_row(
                    [(pi(r, k, u, v), 1.0) for v in range(n)] + [(xi(r, k - 1, u), -1.0)], 0.0, 0.0
                )
            for v in range(n):
                add_row([(pi(r, k, u, v), 1.0) for u in range(n)] + [(xi(r, k, v), -1.0)], 0.0, 0.0)
            for u in range(n):
                for v in range(n):
                    col = pi(r, k, u, v)
                    if u == v:
                        if cuts is not None and k in cuts[1]:
                            ub[col] = 0.0
                        continue
                    cost = inst.hop[u][v]
                    if v == e or cost == INF or (cuts is not None and k not in cuts[1]):
                        ub[col] = 0.0
                    else:
                        c[col] = cost
        for v in range(n):
            if v != e:
                enter = [(pi(r, k, u, v), 1.0) for k in range(1, L) for u in range(n) if u != v]
                add_row([(xi(r, 0, v), 1.0), *enter], -INF, 1.0)
    # Memory, scaled by capacity so coefficients stay near 1.
    entry_ids = {inst.index[e] for e in entries}
    for v, node in enumerate(inst.nodes):
        cap = float(node.memory_bytes)
        if v in entry_ids:
            cap -= inst.entry_overhead(v, EMPTY)
        if cap < 0:
            return MilpResult("infeasible", None, None, None)
        if cap == 0:
            cap = 1.0
        terms: list[tuple[int, float]] = []
        for l in range(L):
            for r in range(R):
                terms.append((xi(r, l, v), inst.kv[l] / cap))
            if R > 1:
                terms.append((yi(l, v), inst.weight[l] / cap))
                for r in range(R):
                    add_row([(yi(l, v), 1.0), (xi(r, l, v), -1.0)], 0.0, INF)
            else:
                terms.append((xi(0, l, v), inst.weight[l] / cap))
        add_row(terms, -INF, 1.0 if node.memory_bytes > 0 else 0.0)
    c = np.where(np.isfinite(c), c, 0.0)
    A = coo_matrix((vals, (rows, cols)), shape=(len(lo_b), nvar)).tocsr()
    options: dict[str, Any] = {"disp": False}
    if time_limit is not None:
        options["time_limit"] = time_limit
    res = milp(
        c,
        constraints=LinearConstraint(A, np.array(lo_b), np.array(hi_b)),
        integrality=integrality,
        bounds=Bounds(np.zeros(nvar), ub),
        options=options,
    )
    bound = getattr(res, "mip_dual_bound", None)
    bound = None if bound is None or not math.isfinite(bound) else float(bound) + constant
    if res.x is None:
        status = "infeasible" if res.status == 2 else "time_limit" if res.status == 1 else "error"
        return MilpResult(status, None, bound, None)
    x = res.x
    routes = []
    for r, entry in enumerate(entries):
        on = [max(range(n), key=lambda v: x[xi(r, l, v)]) for l in range(L)]
        routes.append(inst.route(range(L + 1), _path_of(on, inst.index[entry])))
    plan = Plan(epoch, profile.digest, tuple(routes))
    status = "optimal" if res.status == 0 else "time_limit"
    return MilpResult(status, float(res.fun) + constant, bound, plan)


def _placement_cuts(
    inst: Instance, entry: NodeId, current: Plan | None
) -> tuple[int, frozenset[int]] | None:
    route = current.route_for(entry) if current is not None else None
    if route is None:
        return None
    starts = {s.start for s in route.segments if 0 < s.start < inst.L}
    return route.segments[0].end, frozenset(starts)


def _path_of(on: list[int], e: int) -> Path:
    """Segments (node, start, end) of a layer -> node list, entry prefix first."""
    prefix = 0
    while prefix < len(on) and on[prefix] == e:
        prefix += 1
    path: Path = [(e, 0, prefix)]
    for layer in range(prefix, len(on)):
        if path[-1][0] == on[layer] and len(path) > 1:
            w, a, _ = path[-1]
            path[-1] = (w, a, layer + 1)
        else:
            path.append((on[layer], layer, layer + 1))
    return path


# -- vectorised bounds -------------------------------------------------------------


def relaxed_bound(prob: RouteProblem) -> tuple[float, Path | None]:
    """The relaxation of ``planner_dp`` (repeats allowed), vectorised with numpy.

    An independent implementation of ``planner_dp.relaxed_route``: same
    optimum, used to cross-check it and to bound large instances quickly.
    """
    _require_milp_extra()
    import numpy as np

    n, m, e = prob.n, prob.m, prob.entry
    prefix = np.array(prob.prefix, dtype=float)  # n x (m+1)
    hop = np.array(prob.hop, dtype=float)  # n x n
    lo = np.array(prob.lo)  # n x (m+1)
    hi = np.array(prob.hi)
    return _relaxed_np(np, n, m, e, prefix, hop, lo, hi, prob.entry_ends, prob.constant)


def _relaxed_np(
    np: Any,
    n: int,
    m: int,
    e: int,
    prefix: Any,
    hop: Any,
    lo: Any,
    hi: Any,
    entry_ends: Sequence[int],
    constant: float,
) -> tuple[float, Path | None]:
    F = np.full((m + 1, n), INF)
    V = np.full((m + 1, n), INF)  # best arrival into w at a, minus prefix[w][a]
    arg_v = np.zeros((m + 1, n), dtype=int)
    arg_a = np.zeros((m + 1, n), dtype=int)
    entry_val = np.full(m + 1, INF)
    for a in entry_ends:
        entry_val[a] = constant + prefix[e, a]
    cols = np.arange(n)
    starts = np.arange(m + 1)
    for b in range(m + 1):
        if b:
            ok = starts[:b, None] >= lo[:, b][None, :]
            sub = np.where(ok, V[:b], INF)
            a_best = sub.argmin(axis=0)
            F[b] = prefix[:, b] + sub[a_best, cols]
            arg_a[b] = a_best
        F[b, e] = entry_val[b]
        if b == m:
            break
        S = F[b][:, None] + hop
        arg_v[b] = S.argmin(axis=0)
        g = S[arg_v[b], cols]
        g[e] = INF
        g[hi[:, b] <= b] = INF
        V[b] = g - prefix[:, b]
    end = F[m] + np.where(cols == e, 0.0, hop[:, e])
    last = int(end.argmin())
    best = float(end[last])
    if not math.isfinite(best):
        return INF, None
    path: Path = []
    b, w = m, last
    while w != e:
        a = int(arg_a[b, w])
        path.append((w, a, b))
        w, b = int(arg_v[a, w]), a
    path.append((e, 0, b))
    path.reverse()
    return best, path


def numpy_relax(prob: RouteProblem) -> Relax:
    """A ``planner_bounds.Relax`` backend over numpy arrays built once for ``prob``."""
    _require_milp_extra()
    import numpy as np

    prefix = np.array(prob.prefix, dtype=float)
    hop = np.array(prob.hop, dtype=float)
    lo, hi = np.array(prob.lo), np.array(prob.hi)
    cap = np.maximum(np.array(prob.cap, dtype=float), 1.0)
    share = np.array(prob.mem, dtype=float) / cap[:, None]
    others = np.arange(prob.n) != prob.entry

    def relax(
        _: RouteProblem, memory: Sequence[float], visits: Sequence[float]
    ) -> tuple[float, Path | None]:
        lam = np.asarray(memory) * others
        mu = np.asarray(visits) * others
        return _relaxed_np(
            np,
            prob.n,
            prob.m,
            prob.entry,
            prefix + lam[:, None] * share,
            hop + mu[None, :],
            lo,
            hi,
            prob.entry_ends,
            prob.constant,
        )

    return relax


def lagrangian_bound(prob: RouteProblem, ub: float, iterations: int = 60) -> float:
    """``planner_bounds.lagrangian``'s bound, with the relaxation vectorised."""
    return lagrangian(prob, ub, iterations, relax=numpy_relax(prob)).bound
