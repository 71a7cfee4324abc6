"""Express decode steps for sessions that share a route (``express`` is for a
session alone on its route).

When two sessions of one entry decode at once they share every node and link
of its route. The per-hop events (``dataplane``) then still make one pass
per hop per token, but the passes hardly ever batch (a node takes the one
work that waits for it; the other session arrives while it runs, waits and
runs alone after it): each node serves them first come, first served, one
at a time, and each link sends their frames in turn. While that holds, and
nothing else reaches those nodes, the sessions' next steps are a function of
the node figures and the link traces alone, as for one session.

``plan`` takes the sessions over where they are (the one that just finished
a step at its entry, the others in a pass or on a link: their pending
per-hop event is emptied) and replays the per-hop events of the group among
themselves, in time order, with the per-hop formulas, until one of them is
about to finish its request, two works would wait at one node (the per-hop
path would batch them), or the next scenario event. It keeps what happened:
passes in the order they started, frames in the order they were sent, each
session's legs. ``settle`` then, at the end or when something reaches those
nodes first (as ``express.settle``), counts what the per-hop events would
have counted by then and puts every session back as per-hop events where it
is: in a pass, waiting for a node, or on a link.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from edgesplit.core.cost import MIN_FREE_FRACTION
from edgesplit.sim.world import SimLink, SimNode, Work

if TYPE_CHECKING:
    from edgesplit.sim.dataplane import DataPlane, Session
    from edgesplit.sim.express import Hop

INF = float("inf")


@dataclass(slots=True, eq=False)
class Leg:
    """One session's work at one hop: arrival, pass start and end, and the frame."""

    hop: int
    ctx: int
    arrive: float
    start: float
    end: float
    sent: float | None = None  # arrival at the next hop (None: last hop, or not yet sent)


@dataclass(slots=True, eq=False)
class Member:
    session: Any  # dataplane.Session
    generation: int
    legs: list[Leg] = field(default_factory=list)
    steps: int = 0  # steps finished in the group


@dataclass(slots=True, eq=False)
class Group:
    nodes: tuple[SimNode, ...]
    hops: tuple[Hop, ...]
    links0: tuple[tuple[SimLink, float], ...]
    members: list[Member]
    until: float  # the first event not replayed (the group settles then)
    # (start, node, segment, seconds) in start order; (end, node, link, free_at after) in send order
    passes: list[tuple[float, SimNode, Any, float]] = field(default_factory=list)
    sends: list[tuple[float, SimNode, SimLink, float]] = field(default_factory=list)
    started: int = 0  # passes counted
    ended: int = 0  # sends counted


def _pending(s: Session, now: float) -> tuple[Leg, bool] | None:
    """Where per-hop ``s`` is, as a leg: (leg, in a pass), emptying its pending
    event; None if it is not plainly in one pass or on one link."""
    p = s.pending
    if p is None:
        return None
    kind, works, t, node = p
    if len(works) != 1 or works[0].session is not s or works[0].generation != s.generation:
        return None
    w = works[0]
    if w.tokens != 1 or t <= now:
        return None
    if kind == "pass":
        if not node.running or node.queue:
            return None
        return Leg(w.hop, w.context, -INF, -INF, t), True
    return Leg(w.hop, w.context, t, INF, INF), False


def plan(dp: DataPlane, s: Session, now: float, horizon: float) -> Group | None:
    """Take ``s`` (its step just ended) and the sessions sharing its route over
    as a group; None if they do not qualify or not one event could be replayed."""
    route = s.route
    nodes, hops = dp.route_table.get(route)
    users = dp.route_users.get(id(route))
    if hops is None or users is None or len(users) < 2:
        return None
    k = len(users)
    for n in nodes:
        if n.users != k or n.express is not None or not n.alive:
            return None
    if any(h[6] is None for h in hops[:-1]):
        return None  # two segments in a row on one node: not a frame between them
    taken: list[tuple[Session, Leg, bool]] = []
    for x in users.values():
        if x is s:
            continue
        if x.chunk is not None or x.done or x.generated == 0 or x.route is not route:
            return None
        got = _pending(x, now)
        if got is None:
            return None
        taken.append((x, *got))
    running = {n for n in nodes if n.running}
    in_pass = [hops[leg.hop][0] for _, leg, busy in taken if busy]
    if running != set(in_pass) or len(in_pass) != len(running) or any(
            n.queue for n in nodes):
        return None  # a node runs no one else's pass, and one at a time
    g = _replay(dp, s, now, horizon, nodes, hops, taken)
    if g is None:
        return None
    for x, _, _ in taken:  # their pending per-hop events do nothing now
        x.pending[1].clear()
        x.pending = None
    for n in nodes:
        n.running = False
        n.express = s
    return g


def _replay(dp: DataPlane, s: Session, now: float, horizon: float,
            nodes: tuple[SimNode, ...], hops: tuple[Hop, ...],
            taken: list[tuple[Session, Leg, bool]]) -> Group | None:
    links = tuple(dict.fromkeys(h[6] for h in hops if h[6] is not None))
    links0 = tuple((lk, lk.free_at) for lk in links)
    # The per-hop formulas as ``express.plan`` spells them (the same floats).
    priced = []
    for n, _seg, flops, weights, kv, layers, link in hops:
        factor = (n.slowdown / max(1.0 - n.background, MIN_FREE_FRACTION)
                  if n.background_slows else n.slowdown)
        priced.append((flops / n.hw.effective_flops, weights, kv,
                       n.hw.memory_bandwidth * n.hw.memory_efficiency,
                       layers * n.hw.layer_overhead_s, factor))
    last = len(hops) - 1
    act = dp.table.act_bytes
    members = [Member(s, s.generation)] + [Member(x, x.generation) for x, _, _ in taken]
    busy: dict[SimNode, float] = {}  # node -> end of its pass
    waiting: dict[SimNode, int] = {}  # node -> member waiting for it
    events: list[tuple[float, int, int, int]] = []  # (time, seq, 0 arrive / 1 end, member)
    seq = 0
    g = Group(nodes, hops, links0, members, INF)

    members[0].legs.append(Leg(0, s.prompt + s.generated - 1, now, INF, INF))
    events.append((now, 0, 0, 0))
    for i, (_, leg, in_pass) in enumerate(taken, start=1):
        members[i].legs.append(leg)
        seq += 1
        if in_pass:
            busy[hops[leg.hop][0]] = leg.end
            events.append((leg.end, seq, 1, i))
        else:
            events.append((leg.arrive, seq, 0, i))
    heapq.heapify(events)
    replayed = 0

    def begin(i: int, t: float) -> None:
        nonlocal seq
        leg = members[i].legs[-1]
        leg.start = t
        compute, weights, kv, bandwidth, overhead, factor = priced[leg.hop]
        memory = (weights + kv * (leg.ctx + 1)) / bandwidth
        seconds = (max(compute, memory) + overhead) * factor
        leg.end = t + seconds
        node = hops[leg.hop][0]
        busy[node] = leg.end
        g.passes.append((t, node, hops[leg.hop][1], seconds))
        seq += 1
        heapq.heappush(events, (leg.end, seq, 1, i))

    while events:
        t, _, kind, i = events[0]
        # Two events at one instant (the next is a child of the heap's root):
        # the per-hop path orders them.
        if t >= horizon or (len(events) > 1 and events[1][0] == t) or (
                len(events) > 2 and events[2][0] == t):
            break
        m = members[i]
        leg = m.legs[-1]
        node = hops[leg.hop][0]
        if kind == 0:  # arrives at its hop's node
            if busy.get(node) == t:
                break  # its pass ends now too: the per-hop path orders them
            if busy.get(node, -INF) > t:
                if node in waiting:
                    break  # a second work waiting: per hop, they would batch
                waiting[node] = i
                heapq.heappop(events)
            else:
                heapq.heappop(events)
                begin(i, t)
        else:  # its pass ends
            if leg.hop == last:
                if m.session.generated + m.steps + 1 >= m.session.new_tokens:
                    break  # its request ends: back to the per-hop path first
                first = hops[0][0]
                if first is node and node in waiting:
                    break  # its next step would batch with the work waiting here
                if first is not node and (busy.get(first) == t or (
                        busy.get(first, -INF) > t and first in waiting)):
                    break
                heapq.heappop(events)
                del busy[node]
                m.steps += 1
                m.legs.append(Leg(0, leg.ctx + 1, t, INF, INF))
                if busy.get(first, -INF) > t:
                    waiting[first] = i
                else:
                    begin(i, t)
            else:
                heapq.heappop(events)
                del busy[node]
                link = hops[leg.hop][6]
                assert link is not None
                leg.sent = link.send(t, act)
                g.sends.append((t, node, link, link.free_at))
                m.legs.append(Leg(leg.hop + 1, leg.ctx, leg.sent, INF, INF))
                seq += 1
                heapq.heappush(events, (leg.sent, seq, 0, i))
            w = waiting.pop(node, None)
            if w is not None and node not in busy:
                begin(w, t)
        replayed += 1
    for lk, f in links0:
        lk.free_at = f  # as before: settle sets them as the sends made by then left them
    if replayed == 0:
        return None
    if not events:
        return None
    g.until = events[0][0]
    return g


def catch_up(dp: DataPlane, g: Group, t: float, upto: bool = True) -> None:
    """Count the group's passes started and frames sent by ``t`` (``upto``
    False: before ``t``), node by node in the order the per-hop events would."""
    passes, k = g.passes, g.started
    while k < len(passes):
        start, node, seg, seconds = passes[k]
        if start > t or (start == t and not upto):
            break
        node.busy_s += seconds
        node.busy_since_report += seconds
        c = node.seg_counters.get((id(seg), False))
        if c is None:
            node.seg_counters[(id(seg), False)] = [seconds, 1, seg]
        else:
            c[0] += seconds
            c[1] += 1
        k += 1
    g.started = k
    sends, k = g.sends, g.ended
    act = dp.table.act_bytes
    while k < len(sends):
        end, node, link, _ = sends[k]
        if end > t or (end == t and not upto):
            break
        node.bytes_sent[link.dst] = node.bytes_sent.get(link.dst, 0) + act
        k += 1
    g.ended = k


def settle(dp: DataPlane, g: Group, t: float, upto: bool = True) -> None:
    """Count and record what the group did by ``t`` and put each session back as
    per-hop events where it is then."""
    for n in g.nodes:
        n.express = None
    for m in g.members:
        m.session.chunk = None
        dp.expressing.pop(m.session.sid, None)
    catch_up(dp, g, t, upto)

    def done(x: float) -> bool:
        return x < t or (upto and x == t)

    last_send: dict[SimLink, float] = dict(g.links0)
    for _end, _node, link, after in g.sends[:g.ended]:
        last_send[link] = after
    for lk, f in last_send.items():
        lk.free_at = f
    hops, last = g.hops, len(g.hops) - 1
    waiting: list[tuple[SimNode, Work]] = []
    records: list[tuple[float, int, Session]] = []
    clock = dp.clock
    for k, m in enumerate(g.members):
        s = m.session
        for leg in m.legs:
            if leg.hop == last and done(leg.end):
                records.append((leg.end, k, s))
                continue
            if done(leg.end):
                continue  # sent on: the next leg says where it is
            node = hops[leg.hop][0]
            w = Work(s, leg.hop, 1, leg.ctx, m.generation)
            if done(leg.start):
                node.running = True
                batch = [w]
                s.pending = ("pass", batch, leg.end, node)
                clock.at(leg.end, dp.end_pass, node, batch, node.incarnation)
            elif done(leg.arrive):
                waiting.append((node, w))
                s.pending = None
            else:
                works = [w]
                s.pending = ("link", works, leg.arrive, node)
                clock.at(leg.arrive, dp.deliver, node.node_id, works)
            break
    for end, _, s in sorted(records, key=lambda r: r[:2]):
        dp.record_step(s, end)
    for node, w in waiting:
        node.queue.append(w)
        if not node.running:  # its turn came just now (the pass it waited for ended)
            dp._start_pass(node)
