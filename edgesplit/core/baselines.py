"""The strategies the planner is compared with, each as a pure function.

Every baseline returns a ``Plan`` (one route per entry) or a reason, and is
judged with the same cost model (``edgesplit.core.cost.evaluate``). They share
the route shape of the planner: the entry holds ``embed``, a prefix and
``head``; the other nodes follow in ring order.

* ``static``: decided once, as the paper's initial deployment: the entry keeps
  ``embed``, the first ``privacy_depth`` layers and ``head``; all other layers
  go to the single most capable node (fastest over those layers) that can hold
  them and talks to the entry.
* ``memory_proportional``: exo's ring partitioning: every alive node, entry
  first then cluster order, gets a contiguous share of layers proportional to
  its memory (``start = floor(L * memory before / total memory)``).
* ``greedy_fill``: accelerate's ``infer_auto_device_map``: nodes in order,
  entry first, each filled with as many next layers as its memory holds.
* ``throughput_balanced``: Petals' aim of balancing throughput across blocks:
  every alive node, in order, gets a contiguous span with a layer count
  proportional to its speed (1 / per-layer time), capped by its memory, so
  every stage takes about the same time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from edgesplit.core.cost import kv_bytes, layer_times
from edgesplit.core.route import route_from_cuts
from edgesplit.core.types import (
    ClusterState,
    Epoch,
    ModelProfile,
    NodeId,
    NodeState,
    Plan,
    Route,
    Workload,
)


@dataclass(frozen=True, slots=True)
class BaselineResult:
    plan: Plan | None
    reason: str = ""


Baseline = Callable[[ClusterState, ModelProfile, Workload, Sequence[NodeId]], BaselineResult]


def ring_route(entry: NodeId, order: Sequence[NodeId], counts: Sequence[int], L: int) -> Route:
    """A route giving ``counts[i]`` consecutive layers to ``order[i]`` (``order[0]`` = entry)."""
    nodes, cuts, pos = [entry], [], counts[0]
    for node, count in zip(order[1:], counts[1:], strict=True):
        if count:
            nodes.append(node)
            cuts.append(pos)
            pos += count
    return route_from_cuts(entry, nodes, cuts, L)


def _order(state: ClusterState, entry: NodeId) -> list[NodeState]:
    alive = [n for n in state.nodes if n.alive]
    first = [n for n in alive if n.node_id == entry]
    return first + [n for n in alive if n.node_id != entry]


def _room(node: NodeState, profile: ModelProfile, workload: Workload, entry: bool) -> int:
    """Bytes left for decoder layers on ``node``."""
    if not entry:
        return node.memory_bytes
    extra = profile.embed.weight_bytes + profile.head.weight_bytes
    return (
        node.memory_bytes
        - extra
        - kv_bytes(profile.embed, workload)
        - kv_bytes(profile.head, workload)
    )


def _layer_bytes(profile: ModelProfile, workload: Workload) -> list[int]:
    return [c.weight_bytes + kv_bytes(c, workload) for c in profile.layers]


def _proportional(total: int, shares: Sequence[float]) -> list[int]:
    """Integer split of ``total`` by ``shares`` (largest remainder, ties to the first)."""
    s = sum(shares)
    if s <= 0:
        return [total] + [0] * (len(shares) - 1)
    exact = [total * x / s for x in shares]
    counts = [math.floor(x) for x in exact]
    order = sorted(range(len(shares)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


def _per_route(
    build: Callable[[ClusterState, ModelProfile, Workload, NodeId], Route | str],
) -> Baseline:
    def baseline(
        state: ClusterState, profile: ModelProfile, workload: Workload, entries: Sequence[NodeId]
    ) -> BaselineResult:
        routes = []
        for entry in entries:
            if not any(n.node_id == entry and n.alive for n in state.nodes):
                return BaselineResult(None, f"entry {entry} is not alive")
            route = build(state, profile, workload, entry)
            if isinstance(route, str):
                return BaselineResult(None, route)
            routes.append(route)
        return BaselineResult(Plan(Epoch(0), profile.digest, tuple(routes)))

    baseline.__doc__ = build.__doc__
    return baseline


def _static(
    state: ClusterState, profile: ModelProfile, workload: Workload, entry: NodeId
) -> Route | str:
    """Entry keeps embed, the pinned layers and head; the rest to the most capable node."""
    L = profile.num_layers
    depth = max(0, min(workload.privacy_depth, L))
    nodes = _order(state, entry)
    sizes = _layer_bytes(profile, workload)
    if sum(sizes[:depth]) > _room(nodes[0], profile, workload, True):
        return f"static: entry {entry} cannot hold embed, layers 0..{depth - 1} and head"
    if depth == L:
        return ring_route(entry, [entry], [L], L)
    rest = sum(sizes[depth:])
    links = {(link.src, link.dst) for link in state.links}
    fits = [
        n
        for n in nodes[1:]
        if rest <= n.memory_bytes and (entry, n.node_id) in links and (n.node_id, entry) in links
    ]
    if not fits:
        if rest + sum(sizes[:depth]) <= _room(nodes[0], profile, workload, True):
            return ring_route(entry, [entry], [L], L)
        return f"static: no node linked to {entry} can hold layers {depth}..{L - 1}"
    best = min(fits, key=lambda n: (sum(layer_times(n, profile)[0][depth:]), nodes.index(n)))
    return ring_route(entry, [entry, best.node_id], [depth, L - depth], L)


def _memory_proportional(
    state: ClusterState, profile: ModelProfile, workload: Workload, entry: NodeId
) -> Route | str:
    """exo: contiguous layer shares proportional to node memory, in ring order."""
    nodes = _order(state, entry)
    L, total = profile.num_layers, sum(n.memory_bytes for n in nodes)
    counts, before = [], 0
    for n in nodes:
        start = math.floor(L * before / total)
        before += n.memory_bytes
        end = L if n is nodes[-1] else math.floor(L * before / total)
        counts.append(end - start)
    return ring_route(entry, [n.node_id for n in nodes], counts, L)


def _greedy_fill(
    state: ClusterState, profile: ModelProfile, workload: Workload, entry: NodeId
) -> Route | str:
    """accelerate: fill nodes in order, entry first, with as many next layers as fit."""
    nodes = _order(state, entry)
    sizes = _layer_bytes(profile, workload)
    L, pos, counts = profile.num_layers, 0, []
    for k, n in enumerate(nodes):
        room, start = _room(n, profile, workload, k == 0), pos
        while pos < L and sizes[pos] <= room:
            room -= sizes[pos]
            pos += 1
        counts.append(pos - start)
    if pos < L:
        return f"greedy fill: nodes hold only layers 0..{pos - 1} of {L}"
    return ring_route(entry, [n.node_id for n in nodes], counts, L)


def _throughput_balanced(
    state: ClusterState, profile: ModelProfile, workload: Workload, entry: NodeId
) -> Route | str:
    """Petals-like: spans proportional to node speed, capped by memory, in order."""
    nodes = _order(state, entry)
    L = profile.num_layers
    mean_size = sum(_layer_bytes(profile, workload)) / max(L, 1)
    caps = [
        max(0, int(_room(n, profile, workload, k == 0) // mean_size)) for k, n in enumerate(nodes)
    ]
    speed = [L / max(sum(layer_times(n, profile)[0]), 1e-12) for n in nodes]
    counts, open_, left = [0] * len(nodes), list(range(len(nodes))), L
    while left > 0 and open_:
        share = _proportional(left, [speed[i] for i in open_])
        capped = [i for i, c in zip(open_, share, strict=True) if counts[i] + c >= caps[i]]
        if not capped:
            for i, c in zip(open_, share, strict=True):
                counts[i] += c
            left = 0
            break
        for i in capped:
            left -= caps[i] - counts[i]
            counts[i] = caps[i]
        open_ = [i for i in open_ if i not in capped]
    if left > 0:
        return f"throughput balanced: memory holds only {L - left} of {L} layers"
    return ring_route(entry, [n.node_id for n in nodes], counts, L)


static = _per_route(_static)
memory_proportional = _per_route(_memory_proportional)
greedy_fill = _per_route(_greedy_fill)
throughput_balanced = _per_route(_throughput_balanced)

BASELINES: dict[str, Baseline] = {
    "static": static,
    "memory_proportional": memory_proportional,
    "greedy_fill": greedy_fill,
    "throughput_balanced": throughput_balanced,
}
