"""From domain values to the index form the dynamic programs and the MILP read.

``Instance`` gathers, once per solve, what every route of a plan shares: the
alive nodes in ``ClusterState`` order, per-node layer times, link lookups and
the hop matrix. ``Instance.route_problem`` then builds one ``RouteProblem``
for an entry, given what other routes already occupy, and ``Instance.route``
turns a solved path back into a ``Route``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from edgesplit.core.cost import (
    hop_seconds,
    kv_bytes,
    layer_times,
    load_per_second,
    memory_use,
    sensitive_depth,
)
from edgesplit.core.planner_dp import Path, RouteProblem
from edgesplit.core.route import route_from_cuts
from edgesplit.core.trust import trusts
from edgesplit.core.types import (
    ClusterState,
    LayerKey,
    ModelProfile,
    NodeId,
    NodeState,
    Part,
    Privacy,
    Route,
    Weights,
    Workload,
)

INF = math.inf


@dataclass(frozen=True, slots=True)
class Occupancy:
    """What other routes already take: bytes, items held, utilisation added, per node."""

    used: dict[NodeId, int]
    held: dict[NodeId, frozenset[LayerKey]]
    load: dict[NodeId, float]


EMPTY = Occupancy({}, {}, {})


class Instance:
    """The alive part of a cluster, indexed, with costs in objective units.

    ``scale`` (alpha / number of routes) turns seconds into objective units so
    that the sum of route objectives is ``alpha * mean latency + gamma * penalty``.
    """

    def __init__(
        self,
        state: ClusterState,
        profile: ModelProfile,
        workload: Workload,
        weights: Weights,
        num_routes: int,
    ) -> None:
        self.profile, self.workload, self.weights = profile, workload, weights
        self.nodes: list[NodeState] = [n for n in state.nodes if n.alive]
        self.index = {n.node_id: i for i, n in enumerate(self.nodes)}
        self.n, self.L = len(self.nodes), profile.num_layers
        self.num_routes = max(num_routes, 1)
        self.scale = weights.alpha / self.num_routes
        self.depth = sensitive_depth(profile, workload)
        self.times = [layer_times(n, profile) for n in self.nodes]
        self.weight = [c.weight_bytes for c in profile.layers]
        self.kv = [kv_bytes(c, workload) for c in profile.layers]
        act = profile.activation_bytes_per_token
        hop = [[INF] * self.n for _ in range(self.n)]
        seen: set[tuple[int, int]] = set()
        for link in state.links:  # the first link listed for a pair wins, as in ClusterState.link
            a, b = self.index.get(link.src), self.index.get(link.dst)
            if a is None or b is None or a == b or (a, b) in seen:
                continue
            seen.add((a, b))
            hop[a][b] = self.scale * hop_seconds(link, 1, act)
        self.hop = tuple(tuple(row) for row in hop)

    # -- building -----------------------------------------------------------------

    @property
    def load_per_second(self) -> float:
        """Utilisation one second of per-token compute adds on a node, per route."""
        return load_per_second(self.workload, self.num_routes)

    def occupancy(self, routes: Sequence[Route]) -> Occupancy:
        held: dict[NodeId, set[LayerKey]] = {}
        load: dict[NodeId, float] = {}
        for r in routes:
            for s in r.segments:
                held.setdefault(s.node, set()).update(s.keys)
                layer_s, embed_s, head_s = self.times[self.index[s.node]]
                busy = sum(layer_s[s.start : s.end])
                busy += (embed_s if s.has_embed else 0.0) + (head_s if s.has_head else 0.0)
                load[s.node] = load.get(s.node, 0.0) + busy * self.load_per_second
        used = memory_use(routes, self.profile, self.workload)
        return Occupancy(used, {k: frozenset(v) for k, v in held.items()}, load)

    def entry_overhead(self, entry: int, occ: Occupancy) -> int:
        """Bytes the entry needs for embed and head beyond what it already holds."""
        held = occ.held.get(self.nodes[entry].node_id, frozenset())
        p, wl = self.profile, self.workload
        need = kv_bytes(p.embed, wl) + kv_bytes(p.head, wl)
        need += 0 if Part.EMBED in held else p.embed.weight_bytes
        need += 0 if Part.HEAD in held else p.head.weight_bytes
        return need

    def route_problem(
        self,
        entry: NodeId,
        positions: Sequence[int] | None = None,
        *,
        placement: bool = False,
        entry_end: int | None = None,
        occ: Occupancy = EMPTY,
        keep: Sequence[int] | None = None,
        max_util: float | None = None,
    ) -> RouteProblem:
        """The route of ``entry`` over the nodes ``keep`` (default all; must hold the entry).

        Cuts may fall on ``positions`` (default every layer boundary). With
        ``placement`` every interval between consecutive positions is one
        segment (PLACEMENT mode) and the entry's prefix ends at
        ``positions[entry_end]``. ``occ`` is what other routes already hold.
        ``max_util`` caps every node's utilisation (background, other routes,
        this route) by limiting how much compute a segment may put on it.
        """
        L = self.L
        keep = list(range(self.n)) if keep is None else list(keep)
        e = keep.index(self.index[entry])
        pos = tuple(positions) if positions is not None else tuple(range(L + 1))
        m = len(pos) - 1
        high = self.workload.privacy is Privacy.HIGH
        gamma = self.weights.gamma
        prefix, lo, hi, mems, caps = [], [], [], [], []
        ends: list[int] = []
        for w, full in enumerate(keep):
            node = self.nodes[full]
            trusted = trusts(node, entry)
            layer_s = self.times[full][0]
            held = occ.held.get(node.node_id, frozenset())
            cap = node.memory_bytes - occ.used.get(node.node_id, 0)
            busy_cap = INF  # seconds of compute per token this route may put on the node
            if max_util is not None:
                room = max_util - node.utilization - occ.load.get(node.node_id, 0.0)
                busy_cap = room / self.load_per_second if self.load_per_second > 0 else INF
                busy_cap = busy_cap if room >= 0 else -1.0
            if w == e:
                cap -= self.entry_overhead(full, occ)
                busy_cap -= self.times[full][1] + self.times[full][2]
            cost, mem, busy = [0.0], [0], [0.0]
            for i in range(L):
                pen = gamma if (i < self.depth and not trusted and not high) else 0.0
                cost.append(cost[-1] + self.scale * layer_s[i] + pen)
                mem.append(mem[-1] + self.kv[i] + (0 if i in held else self.weight[i]))
                busy.append(busy[-1] + layer_s[i])
            prefix.append(tuple(cost[p] for p in pos))
            mp = [mem[p] for p in pos]
            tp = [busy[p] for p in pos]
            mems.append(tuple(mp))
            caps.append(cap)
            # Untrusted nodes may not start a segment before the pinned layers end.
            first = 0
            if high and not trusted:
                first = next(a for a in range(m + 1) if pos[a] >= self.depth)
            if w == e:
                ends = [
                    a
                    for a in range(m + 1)
                    if mp[a] <= cap and tp[a] <= busy_cap and (entry_end is None or a == entry_end)
                ]
            if w == e or cap < 0 or busy_cap < 0:
                lo.append(tuple(range(m + 1)))
                hi.append(tuple(range(m + 1)))
                continue
            lo_w, a = [], 0
            for b in range(m + 1):
                while mp[b] - mp[a] > cap or tp[b] - tp[a] > busy_cap:
                    a += 1
                lo_w.append(min(b, max(a, first, b - 1 if placement else 0)))
            hi_w, b = [], 0
            for a in range(m + 1):
                b = max(b, a)
                while b < m and mp[b + 1] - mp[a] <= cap and tp[b + 1] - tp[a] <= busy_cap:
                    b += 1
                end = min(b, a + 1) if placement else b
                hi_w.append(a if a < first else end)
            lo.append(tuple(lo_w))
            hi.append(tuple(hi_w))
        node_e = self.nodes[keep[e]]
        _, embed_s, head_s = self.times[keep[e]]
        constant = self.scale * (embed_s + head_s)
        if not trusts(node_e, entry) and not high:
            constant += 2 * gamma
        hop = (
            self.hop
            if len(keep) == self.n
            else tuple(tuple(self.hop[v][w] for w in keep) for v in keep)
        )
        return RouteProblem(
            n=len(keep),
            entry=e,
            positions=pos,
            prefix=tuple(prefix),
            lo=tuple(lo),
            hi=tuple(hi),
            entry_ends=tuple(ends),
            hop=hop,
            constant=constant,
            mem=tuple(mems),
            cap=tuple(caps),
        )

    # -- reading back ---------------------------------------------------------------

    def route(self, positions: Sequence[int], path: Path) -> Route:
        """The ``Route`` of a path over all nodes' indices, cut at ``positions``."""
        ids = [n.node_id for n in self.nodes]
        entry = ids[path[0][0]]
        cuts = [positions[a] for _, a, _ in path[1:]]
        return route_from_cuts(entry, [ids[w] for w, _, _ in path], cuts, self.L)
