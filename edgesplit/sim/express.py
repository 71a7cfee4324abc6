"""Express decode steps: a session alone on its route runs its steps without
per-hop events.

The per-hop data plane (``dataplane``) costs a pass and a delivery event per
hop per token, which is what a thousand-node hour is made of. While a session
is the only one on every node of its route nothing can share or delay its
passes, so its next steps are a function of the node figures and the link
traces alone. ``plan`` prices them hop by hop with the formulas the per-hop
events use (``HardwareClass.batch_seconds`` stretched as
``SimNode.pass_seconds`` stretches it, ``SimLink.send``), up to the end of
the request or the next scenario event (it changes node or link figures),
whichever comes first. One event then settles the steps. A report of one of
the nodes meanwhile first counts what the per-hop events would have counted
by then (``catch_up``: busy time and layer counters at each pass's start,
bytes at its end).

If something reaches those nodes first (another session's work, a plan
committed for the entry, a node failure) ``derail`` settles the steps done by
then and puts the step in flight back as per-hop events where it is: in a
pass, or on a link to the next hop. So the run is the per-hop run; only ties
between events at the same instant may order differently. Sessions that
share a route take the same shortcut together in ``group``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from edgesplit.core.cost import MIN_FREE_FRACTION
from edgesplit.core.types import Route
from edgesplit.sim import group
from edgesplit.sim.world import SimLink, SimNode, Work

if TYPE_CHECKING:
    from edgesplit.sim.dataplane import DataPlane, Session

# One hop of a route, fixed while the route lives: the node, the segment's
# counter key and figures (FLOPs/token, weight bytes, KV bytes/token, layers),
# and the link to the next hop's node (None: same node, or the last hop).
Hop = tuple[SimNode, Any, float, float, float, int, "SimLink | None"]
# One hop of one planned step: (pass start, pass end, seconds, arrival at the
# next hop, the link's free_at after the send).
Leg = tuple[float, float, float, float, float]


@dataclass(slots=True, eq=False)
class Chunk:
    generation: int
    ctx: int  # KV context of the first step
    nodes: tuple[SimNode, ...]  # held while the chunk runs
    hops: tuple[Hop, ...]
    links0: tuple[tuple[SimLink, float], ...]  # free_at of the route's links before it
    steps: list[list[Leg]]
    started: int = 0  # passes (step * hops + hop) whose start has been counted
    ended: int = 0  # ... and whose end (bytes sent) has been counted
    counters: list[list[Any] | None] = field(default_factory=list)  # per hop, once found


class RouteTable:
    """Per-route hop figures, keyed by identity (routes live in kept plans)."""

    def __init__(self, dp: DataPlane) -> None:
        self.dp = dp
        self._routes: dict[int, tuple[Route, tuple[SimNode, ...], tuple[Hop, ...] | None]] = {}

    def get(self, route: Route) -> tuple[tuple[SimNode, ...], tuple[Hop, ...] | None]:
        hit = self._routes.get(id(route))
        if hit is None:
            hit = self._routes[id(route)] = (route, *self._build(route))
        return hit[1], hit[2]

    def _build(self, route: Route) -> tuple[tuple[SimNode, ...], tuple[Hop, ...] | None]:
        dp = self.dp
        segs = route.segments
        nodes = tuple(dict.fromkeys(dp.nodes[s.node] for s in segs))
        hops: list[Hop] = []
        for i, seg in enumerate(segs):
            node = dp.nodes[seg.node]
            link = None
            if i + 1 < len(segs) and segs[i + 1].node != seg.node:
                link = dp.links.get((seg.node, segs[i + 1].node))
                if link is None:
                    return nodes, None  # the per-hop path reports the broken route
            flops, weights, kv, layers = dp.table.segment(seg)
            hops.append((node, seg, flops, weights, kv, layers, link))
        return nodes, tuple(hops)


def plan(dp: DataPlane, s: Session, now: float, horizon: float) -> Chunk | None:
    """Price ``s``'s next decode steps if it is alone on its route; None if not
    (or if not even one step ends before the horizon)."""
    assert s.route is not None
    nodes, hops = dp.route_table.get(s.route)
    if hops is None:
        return None
    for n in nodes:
        if n.users != 1 or n.running or n.queue or n.express is not None or not n.alive:
            return None
    factors = [(h[0].slowdown / max(1.0 - h[0].background, MIN_FREE_FRACTION)
                if h[0].background_slows else h[0].slowdown) for h in hops]
    links = tuple(dict.fromkeys(h[6] for h in hops if h[6] is not None))
    links0 = tuple((lk, lk.free_at) for lk in links)
    act = dp.table.act_bytes
    ctx = s.prompt + s.generated - 1
    # HardwareClass.batch_seconds, its terms computed in the same order (so the
    # same floats): (compute s, weight bytes, KV bytes/token, memory B/s,
    # overhead s, stretch, link) per hop.
    priced = [(flops / n.hw.effective_flops, weights, kv,
               n.hw.memory_bandwidth * n.hw.memory_efficiency, layers * n.hw.layer_overhead_s,
               factor, link)
              for (n, _seg, flops, weights, kv, layers, link), factor in zip(hops, factors,
                                                                             strict=True)]
    steps: list[list[Leg]] = []
    t = now
    for _ in range(s.new_tokens - s.generated):
        legs: list[Leg] = []
        c = ctx + len(steps) + 1  # attended this step: the context and the new token
        for compute, weights, kv, bandwidth, overhead, factor, link in priced:
            memory = (weights + kv * c) / bandwidth
            seconds = (max(compute, memory) + overhead) * factor
            start, end = t, t + seconds
            t = end if link is None else link.send(end, act)
            legs.append((start, end, seconds, t, 0.0 if link is None else link.free_at))
        if t >= horizon:  # this step is left to the per-hop path
            _restore_links(hops, steps, links0, len(steps) * len(hops))
            break
        steps.append(legs)
    if not steps:
        return None
    chunk = Chunk(s.generation, ctx, nodes, hops, links0, steps, counters=[None] * len(hops))
    for n in nodes:
        n.express = s
    return chunk


def _restore_links(hops: tuple[Hop, ...], steps: list[list[Leg]],
                   links0: tuple[tuple[SimLink, float], ...], k: int) -> None:
    """Set the route's links as the sends of the first ``k`` passes left them
    (the last send on each), or as before the chunk."""
    free = dict(links0)
    left = set(free)
    n = len(hops)
    for j in range(k - 1, -1, -1):
        link = hops[j % n][6]
        if link in left:
            free[link] = steps[j // n][j % n][4]
            left.discard(link)
            if not left:
                break
    for lk, f in free.items():
        lk.free_at = f


def catch_up(dp: DataPlane, chunk: Chunk, now: float) -> None:
    """Count the passes of ``chunk`` started by ``now`` (busy time, layer
    counters) and ended by ``now`` (bytes sent), as the per-hop events would:
    pass by pass, in the order they ran, so the sums are the same floats."""
    if not isinstance(chunk, Chunk):  # sessions sharing a route
        group.catch_up(dp, chunk, now)
        return
    hops, steps = chunk.hops, chunk.steps
    n, last = len(hops), len(steps) - 1
    counters = chunk.counters
    k = chunk.started
    si, hi = divmod(k, n)
    while si <= last:
        leg = steps[si][hi]
        if leg[0] > now:
            break
        node, seconds = hops[hi][0], leg[2]
        node.busy_s += seconds
        node.busy_since_report += seconds
        c = counters[hi]
        if c is None:  # the hop's counter, found (or made) once per chunk
            key = (id(hops[hi][1]), False)
            c = node.seg_counters.get(key)
            if c is None:
                c = node.seg_counters[key] = [0.0, 0, hops[hi][1]]  # 0.0 + s is s
            counters[hi] = c
        c[0] += seconds
        c[1] += 1
        k += 1
        hi += 1
        if hi == n:
            si, hi = si + 1, 0
    chunk.started = k
    k = chunk.ended
    si, hi = divmod(k, n)
    act = dp.table.act_bytes
    while si <= last:
        if steps[si][hi][1] > now:
            break
        link = hops[hi][6]
        if link is not None:
            sent = hops[hi][0].bytes_sent
            sent[link.dst] = sent.get(link.dst, 0) + act
        k += 1
        hi += 1
        if hi == n:
            si, hi = si + 1, 0
    chunk.ended = k


def settle(dp: DataPlane, s: Session, chunk: Chunk, now: float) -> bool:
    """Account and record the steps of ``chunk`` done by ``now``; put the step in
    flight (if any) back as per-hop events. True if every step was done."""
    for n in chunk.nodes:
        n.express = None
    s.chunk = None
    catch_up(dp, chunk, now)
    hops = chunk.hops
    done = 0
    for legs in chunk.steps:
        if legs[-1][3] > now:
            break
        dp.record_step(s, legs[-1][3])
        done += 1
    # The links as the sends made by now left them.
    _restore_links(hops, chunk.steps, chunk.links0, chunk.ended)
    if done < len(chunk.steps):
        legs = chunk.steps[done]
        h = next(i for i, leg in enumerate(legs) if leg[1] > now)
        node = hops[h][0]
        w = Work(s, h, 1, chunk.ctx + done, chunk.generation)
        if legs[h][0] <= now:
            node.running = True
            dp.clock.at(legs[h][1], dp.end_pass, node, [w], node.incarnation)
        else:
            dp.clock.at(legs[h][0], dp.deliver, node.node_id, [w])
    return done == len(chunk.steps)
