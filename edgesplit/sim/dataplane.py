"""The simulated data plane (docs/architecture.md §3): sessions, frames per hop, batching,
replay on failure, drain on epoch change (agents keep ``retained_epochs`` older epochs).

A request becomes a session on one of its entry's newest committed routes
(with replicas, the one with the most SLA headroom, by the entry's own rule
``core.route_choice`` over the sessions on each and its measured steps). Its
prompt runs as one prefill pass per hop (the time to first token); then each
decode step carries one token around the ring. Every node batches what waits
for it (``world.SimNode``), and the sessions of one pass bound for the same
next hop travel in one frame. A session stays on the epoch it started on
(drain) unless that epoch's route breaks: then the entry replays its token
history on the newest route (a prefill of prompt + generated tokens), and the
step in progress absorbs the pause. A session that finds no working route
for ``stall_timeout_s`` fails, as does every session of a dead entry.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edgesplit.core.ewma import ewma_step
from edgesplit.core.route_choice import STEP_ALPHA, RouteLoad, choose_route
from edgesplit.core.types import NodeId, Plan, Route
from edgesplit.sim import express, group
from edgesplit.sim.world import Clock, LayerTable, SimLink, SimNode, Work


@dataclass(slots=True, eq=False)
class Session:
    sid: int
    entry: NodeId
    privacy_high: bool
    arrived: float
    prompt: int
    new_tokens: int
    route: Route | None = None
    epoch: int = 0
    generated: int = 0  # tokens produced (the first comes out of prefill)
    step_started: float = 0.0
    ttft: float = 0.0
    steps: list[float] = field(default_factory=list)
    generation: int = 0  # bumped on replay: work queued before it is stale
    broken_since: float | None = None
    done: bool = False
    epochs: set[int] = field(default_factory=set)
    client: int | None = None  # closed-loop client that sent it
    chunk: Any = None  # express decode steps in flight (express.Chunk)
    counted: Route | None = None  # the route whose nodes count s among their users
    # Its per-hop event in flight, for ``group``: ("pass", batch, end, node) or
    # ("link", works, arrival, node); None when it waits in a queue or batched.
    pending: Any = None


@dataclass(slots=True)
class Finished:
    """One request's outcome, as the test bed's ``RequestRecord``."""

    arrived: float
    ok: bool
    privacy_high: bool
    ttft_s: float
    steps_s: tuple[float, ...]
    error: str = ""
    entry: str = ""
    finished: float = 0.0
    epochs: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class DataPlaneConfig:
    max_in_flight: int = 16  # per entry; an arrival beyond it is refused
    failure_detect_s: float = 1.0  # a hop's failure reaches the entry after this
    retry_s: float = 0.5  # the entry retries a broken route this often ...
    stall_timeout_s: float = 30.0  # ... and fails the request after this long
    # Agents keep this many committed epochs before the newest (node_agent
    # ``retained_epochs``); a session on an older one replays on the newest.
    retained_epochs: int = 2
    stall_step_s: float = 2.0  # a step longer than this is logged as a stall
    sla_step_s: float = 0.4  # the entry's decode-step target: it picks among replicas by it
    # Decode steps of a session alone on its route run as one event per
    # stretch (``express``), those of sessions sharing one as a replay among
    # themselves (``group``); False: per-hop events throughout (same figures).
    express: bool = True


class DataPlane:
    def __init__(self, clock: Clock, nodes: dict[NodeId, SimNode],
                 links: dict[tuple[NodeId, NodeId], SimLink], table: LayerTable,
                 config: DataPlaneConfig, on_finish: Callable[[Session, Finished], None],
                 gate: Callable[[Session, Route], bool] | None = None,
                 private: Callable[[Route], bool] | None = None) -> None:
        self.clock, self.nodes, self.links, self.table = clock, nodes, links, table
        self.config = config
        self.on_finish = on_finish
        # The entry's check before a session (re)starts on a route (privacy);
        # False means the gate took the session over.
        self.gate = gate or (lambda s, r: True)
        self.private = private or (lambda r: True)  # may a privacy=high session take it?
        self.stalls: list[float] = []  # times of steps longer than stall_step_s
        # entry -> (epoch, its routes in plan order: one per replica, at)
        self.routes: dict[NodeId, tuple[int, tuple[Route, ...], float]] = {}
        self.route_step: dict[int, float] = {}  # id(route) -> EWMA of its decode steps
        self.active: dict[int, Session] = {}
        self.in_flight: dict[NodeId, int] = {}
        self.step_latencies = array("d")  # every decode step of every finished request
        self.next_sid = 0
        self.route_table = express.RouteTable(self)
        # Instants that change node or link figures (scenario events): no
        # express stretch runs past one.
        self.barriers: list[float] = []
        self.expressing: dict[int, Session] = {}
        self.route_users: dict[int, dict[int, Session]] = {}  # id(route) -> its sessions

    # ---- plans -------------------------------------------------------------------
    def commit(self, plan: Plan) -> None:
        """New sessions take ``plan``'s routes from now on; old ones drain."""
        for e in plan.entries:
            self.routes[e] = (plan.epoch, plan.routes_for(e), self.clock.now)
        entries = {r.entry for r in plan.routes}
        self._derail(lambda s: s.entry in entries)  # their next step sees the new epoch

    def route_ok(self, route: Route) -> bool:
        return all(self.nodes[s.node].alive for s in route.segments)

    def _route_for(self, s: Session) -> tuple[int, Route] | None:
        """The route ``s`` (re)starts on, as the entry picks it
        (``Entry.route``): of its entry's working routes (privacy=high: the
        private ones, when there are), the one with the most SLA headroom."""
        cur = self.routes.get(s.entry)
        if cur is None:
            return None
        routes = [r for r in cur[1] if self.route_ok(r)]
        if s.privacy_high:
            routes = [r for r in routes if self.private(r)] or routes
        if len(routes) <= 1:
            return (cur[0], routes[0]) if routes else None
        loads = [RouteLoad(r.key, len(self.route_users.get(id(r), ())),
                           self.route_step.get(id(r))) for r in routes]
        key = choose_route(loads, self.config.sla_step_s)
        return cur[0], next(r for r in routes if r.key == key)

    # ---- requests ------------------------------------------------------------------
    def admit(self, entry: NodeId, privacy_high: bool, prompt: int, new_tokens: int) -> Session | None:
        """A new session, or None (and a failed record) if the entry refuses it."""
        now = self.clock.now
        self.next_sid += 1
        s = Session(self.next_sid, entry, privacy_high, now, prompt, new_tokens)
        if not self.nodes[entry].alive:
            self._finish(s, "UNAVAILABLE: entry down")
            return None
        if self.in_flight.get(entry, 0) >= self.config.max_in_flight:
            self._finish(s, "OVERLOADED: too many in flight")
            return None
        self.in_flight[entry] = self.in_flight.get(entry, 0) + 1
        self.active[s.sid] = s
        return s

    def start(self, s: Session) -> None:
        """Begin (or replay) ``s`` on its entry's newest route."""
        if s.done:
            return
        cur = self._route_for(s)
        now = self.clock.now
        if cur is None:
            if s.broken_since is None:
                s.broken_since = now
            if now - s.broken_since >= self.config.stall_timeout_s:
                self.fail(s, "UNAVAILABLE: no working route")
            else:
                self.clock.at(now + self.config.retry_s, self.start, s)
            return
        if not self.gate(s, cur[1]):
            return
        self._use(s, cur[1])
        s.epoch, s.route = cur
        s.epochs.add(s.epoch)
        s.broken_since = None
        s.generation += 1
        if s.generated == 0:
            s.step_started = now
        history = s.prompt + s.generated  # every token known so far
        self._enqueue(s.route.segments[0].node, Work(s, 0, history, 0, s.generation))

    def fail(self, s: Session, error: str) -> None:
        if s.chunk is not None:
            self._derail(lambda x: x is s)
        if not s.done:
            self._finish(s, error)

    def _use(self, s: Session, route: Route | None) -> None:
        """``s`` moves to ``route`` (None: it ends): the nodes' user counts."""
        if s.counted is route:
            return
        if s.counted is not None:
            for n in self.route_table.get(s.counted)[0]:
                n.users -= 1
            del self.route_users[id(s.counted)][s.sid]
        if route is not None:
            for n in self.route_table.get(route)[0]:
                n.users += 1
            self.route_users.setdefault(id(route), {})[s.sid] = s
        s.counted = route

    def _finish(self, s: Session, error: str = "") -> None:
        s.done = True
        s.pending = None  # (its works point back at it: no cycle left for the collector)
        self._use(s, None)
        if s.sid in self.active:
            del self.active[s.sid]
            self.in_flight[s.entry] -= 1
        ok = not error
        if ok:
            self.step_latencies.extend(s.steps)
        self.on_finish(s, Finished(s.arrived, ok, s.privacy_high, s.ttft, tuple(s.steps), error,
                                   s.entry, self.clock.now, tuple(sorted(s.epochs))))

    # ---- hops ------------------------------------------------------------------------
    def _enqueue(self, node_id: NodeId, w: Work) -> None:
        node = self.nodes[node_id]
        if node.express is not None:
            held = node.express
            self._derail(lambda s: s is held)
        if not node.alive:
            self._broken(w.session, w.generation)
            return
        node.queue.append(w)
        if not node.running:
            self._start_pass(node)
        else:
            w.session.pending = None

    def _broken(self, s: Session, generation: int) -> None:
        """Work of ``s`` hit a dead node: the entry learns it after the detect delay."""
        if s.done or generation != s.generation:
            return
        s.generation += 1  # whatever else is in flight for s is void
        self.clock.at(self.clock.now + self.config.failure_detect_s, self.start, s)

    def _start_pass(self, node: SimNode) -> None:
        queue = node.queue
        if len(queue) == 1:  # most passes: the loop below with one item, spelled out
            w = queue[0]
            node.queue = []
            s = w.session
            if s.done or w.generation != s.generation:
                return
            batch = [w]
            seconds = node.pass_seconds(self.table, batch, [s.route.segments[w.hop]])
            node.running = True
            node.busy_s += seconds
            node.busy_since_report += seconds
            end = self.clock.now + seconds
            s.pending = ("pass", batch, end, node)
            self.clock.at(end, self.end_pass, node, batch, node.incarnation)
            return
        batch, segs = [], []
        decode = prefill_tokens = 0
        keep: list[Work] = []
        for w in queue:
            s = w.session
            if s.done or w.generation != s.generation:
                continue  # stale: the session replayed or ended
            if w.prefill:
                take = prefill_tokens == 0 or prefill_tokens + w.tokens <= node.prefill_chunk
                if take:
                    prefill_tokens += w.tokens
            else:
                take = decode < node.max_batch
                decode += take
            if take:
                s.pending = None
                batch.append(w)
                assert s.route is not None
                segs.append(s.route.segments[w.hop])
            else:
                keep.append(w)
        node.queue = keep
        if not batch:
            return
        seconds = node.pass_seconds(self.table, batch, segs)
        node.running = True
        node.busy_s += seconds
        node.busy_since_report += seconds
        self.clock.at(self.clock.now + seconds, self.end_pass, node, batch, node.incarnation)

    def end_pass(self, node: SimNode, batch: list[Work], incarnation: int) -> None:
        if incarnation != node.incarnation or not batch:
            # The node died during the pass (its work died with it), or a group
            # took the pass over (``group.plan`` emptied the batch).
            return
        node.running = False
        now = self.clock.now
        if len(batch) == 1:  # most passes: the loops below with one item, spelled out
            w = batch[0]
            s = w.session
            if not s.done and w.generation == s.generation:
                segs = s.route.segments
                hop = w.hop + 1
                if hop == len(segs):
                    self._step_done(s, now)
                elif (nxt := segs[hop].node) == node.node_id:
                    node.queue.append(Work(s, hop, w.tokens, w.context, w.generation))
                elif (link := self.links.get((node.node_id, nxt))) is None:
                    self._broken(s, w.generation)
                else:
                    nbytes = self.table.act_bytes * w.tokens
                    node.bytes_sent[nxt] = node.bytes_sent.get(nxt, 0) + nbytes
                    works = [Work(s, hop, w.tokens, w.context, w.generation)]
                    at = link.send(now, nbytes)
                    s.pending = ("link", works, at, self.nodes[nxt])
                    self.clock.at(at, self.deliver, nxt, works)
            if node.queue and not node.running:
                self._start_pass(node)
            return
        frames: dict[NodeId, list[Work]] = {}
        for w in batch:
            s = w.session
            if s.done or w.generation != s.generation:
                continue
            assert s.route is not None
            segs = s.route.segments
            if w.hop + 1 == len(segs):
                self._step_done(s, now)
                continue
            nxt = segs[w.hop + 1].node
            w2 = Work(s, w.hop + 1, w.tokens, w.context, w.generation)
            if nxt == node.node_id:
                node.queue.append(w2)
            else:
                frames.setdefault(nxt, []).append(w2)
        act = self.table.act_bytes
        for nxt, works in frames.items():
            nbytes = act * sum(w.tokens for w in works)
            link = self.links.get((node.node_id, nxt))
            if link is None:
                for w in works:
                    self._broken(w.session, w.generation)
                continue
            node.bytes_sent[nxt] = node.bytes_sent.get(nxt, 0) + nbytes
            self.clock.at(link.send(now, nbytes), self.deliver, nxt, works)
        # Not if a step that ended in this pass started the next pass here already.
        if node.queue and not node.running:
            self._start_pass(node)

    def deliver(self, node_id: NodeId, works: list[Work]) -> None:
        for w in works:
            if not w.session.done and w.generation == w.session.generation:
                self._enqueue(node_id, w)

    def record_step(self, s: Session, now: float) -> None:
        """A step of ``s`` came back to its entry at ``now``."""
        if s.generated == 0:
            s.ttft = now - s.step_started
        else:
            step = now - s.step_started
            s.steps.append(step)
            if step > self.config.stall_step_s:
                self.stalls.append(now)
            key = id(s.route)
            self.route_step[key] = ewma_step(self.route_step.get(key), step, STEP_ALPHA)
        s.generated += 1
        s.step_started = now

    def _step_done(self, s: Session, now: float) -> None:
        self.record_step(s, now)
        self._next_step(s, now)

    def _next_step(self, s: Session, now: float, fast: bool = True) -> None:
        if s.generated >= s.new_tokens:
            self._finish(s)
            return
        assert s.route is not None
        cur = self.routes.get(s.entry)
        if cur is not None and cur[0] - s.epoch > self.config.retained_epochs:
            self.start(s)  # the old epoch is retired: replay on the new one
            return
        if fast and self.config.express:
            i = bisect.bisect_right(self.barriers, now)
            horizon = self.barriers[i] if i < len(self.barriers) else float("inf")
            chunk = express.plan(self, s, now, horizon)
            if chunk is not None:
                s.chunk = chunk
                self.expressing[s.sid] = s
                self.clock.at(chunk.steps[-1][-1][3], self._chunk_done, s, chunk)
                return
            g = group.plan(self, s, now, horizon)
            if g is not None:
                for m in g.members:
                    m.session.chunk = g
                    self.expressing[m.session.sid] = m.session
                self.clock.at(g.until, self._group_done, g)
                return
        ctx = s.prompt + s.generated - 1
        self._enqueue(s.route.segments[0].node, Work(s, 0, 1, ctx, s.generation))

    def _chunk_done(self, s: Session, chunk: express.Chunk) -> None:
        if s.chunk is not chunk:
            return  # derailed: its steps went back to per-hop events
        del self.expressing[s.sid]
        express.settle(self, s, chunk, self.clock.now)
        self._next_step(s, self.clock.now)

    def _group_done(self, g: group.Group) -> None:
        if g.members[0].session.chunk is g:  # not derailed meanwhile
            group.settle(self, g, self.clock.now, upto=False)

    def _derail(self, which: Callable[[Session], bool]) -> None:
        """Express sessions picked by ``which`` go back to per-hop events now."""
        if not self.expressing:
            return
        now = self.clock.now
        for s in [x for x in self.expressing.values() if which(x)]:
            if s.sid not in self.expressing:
                continue  # settled with its group
            if isinstance(s.chunk, group.Group):
                group.settle(self, s.chunk, now)
                continue
            del self.expressing[s.sid]
            if express.settle(self, s, s.chunk, now):
                self._next_step(s, now, fast=False)  # its last step ended just now

    # ---- failures ----------------------------------------------------------------------
    def kill(self, node_id: NodeId) -> None:
        self._derail(lambda s: s.route is not None and (
            s.entry == node_id or any(seg.node == node_id for seg in s.route.segments)))
        node = self.nodes[node_id]
        node.alive = False
        node.incarnation += 1
        node.running = False
        dropped = node.queue
        node.queue = []
        for w in dropped:
            self._broken(w.session, w.generation)
        for s in list(self.active.values()):
            if s.entry == node_id:
                self.fail(s, "UNAVAILABLE: entry down")
            elif s.route is not None and any(seg.node == node_id for seg in s.route.segments):
                self._broken(s, s.generation)

    def restart(self, node_id: NodeId) -> None:
        node = self.nodes[node_id]
        if not node.alive:
            node.alive = True
            node.seq = 0  # a new incarnation reports from seq 0
