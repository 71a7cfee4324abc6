"""Continuous batching at a node (docs/data-plane.md, batching).

Every step that reaches this node — a frame from the hop before, or a ring
step the entry starts — waits in one queue. Whenever the compute thread is
free, the waiting steps go to it in one hand-off; there the node's scheduler
(``edgesplit.core.batching.plan_batch``) picks the next batch within the
node's limits and KV budget, and the steps at the same hop of the same route
run as one ``forward_batch`` through each of the node's consecutive hops. What
the batch sends to one next hop leaves as one batched frame, sealed once; on
the entry, the head and the samplers of every session whose ring closed run
in one go. A long prompt is run ``prefill_chunk`` tokens per batch between
the decode steps, and forwarded once all of it has run.

While the compute runs one batch, new steps queue for the next, and the
frames of the last are on their way: each node works on its batch while the
others work on theirs, so the ring is a pipeline. On the entry, a session
ready while its route has as many waves out as it keeps waits to leave with
the next wave back (``edgesplit.core.waves``), so the ring carries a few
large batches instead of many small ones (docs/data-plane.md, waves).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from edgesplit.core.batching import BatchLimits, Waiting, plan_batch
from edgesplit.core.types import Route
from edgesplit.core.waves import Waves
from edgesplit.model.base import WIRE_DTYPES
from edgesplit.model.errors import PositionMismatch
from edgesplit.rpc.errors import TooLarge
from edgesplit.security.header import FrameHeader
from edgesplit.v1 import node_agent_pb2 as na
from services.node_agent import metrics as m
from services.node_agent.compute import Compute, Timer
from services.node_agent.epochs import EpochState
from services.node_agent.frames import seal, seal_batch

log = logging.getLogger(__name__)
# Event-loop turns a batch may wait for the sessions whose tokens the last one
# made: each starts its next ring step a few turns after its token is delivered,
# and they should join one batch instead of trickling into several. New
# sessions' first steps (prompts, and the replays a commit moves at once) wait
# the same few turns for each other. Nothing else waits (a frame's steps are
# all queued when it arrives).
_GATHER_TURNS = 4


@dataclass(frozen=True, slots=True)
class Step:
    """One session step as it travels: the frame header's session fields."""

    session_id: str
    step: int
    start_pos: int

    @property
    def phase(self) -> str:
        return "prefill" if self.step == 0 else "decode"


@dataclass(eq=False, slots=True)
class Work:
    """One session's step at this node, from ``hop`` on."""

    es: EpochState
    route: Route
    hop: int
    step: Step
    tokens: int  # positions the step carries
    load: Callable[[Any], Any]  # runner -> the step's input, on the compute thread
    waiting: Any = None  # the entry's waiting step (stage._Waiting) when the ring closes here
    x: Any = None  # the input, once loaded
    done: int = 0  # positions already run here (a chunked prefill)
    outs: list[Any] = field(default_factory=list)  # what the node's last hop made of them

    @property
    def key(self) -> tuple[int, str, int]:
        return (self.es.epoch, self.route.key, self.hop)


@dataclass(slots=True)
class Closed:
    """The ring closed here: the session's next token."""

    work: Work
    token: int
    # perf_counter when the session's next ring step started, in the same
    # hand-off (``Batcher._close``); None: the entry starts it
    next_at: float | None = None


@dataclass(slots=True)
class Send:
    """Link messages for ``dst``, carrying the steps of ``works``."""

    es: EpochState
    dst: str
    works: list[Work]
    messages: list[na.LinkMessage]


@dataclass(slots=True)
class Failed:
    works: list[Work]
    dst: str  # where it failed (this node for a compute error)
    error: Exception


Outcome = Closed | Send | Failed


class Batcher:
    def __init__(self, node_id: str, compute: Compute, limits: BatchLimits, chunk_bytes: int,
                 runners: Callable[[], Iterable[Any]],
                 deliver: Callable[[list[Outcome]], None]) -> None:
        self.node_id = node_id
        self.compute = compute
        self.limits = limits
        self.chunk_bytes = chunk_bytes
        self._runners = runners  # every runner this node holds (the KV budget covers all)
        self._deliver = deliver
        self._queue: list[Work] = []
        self._busy = False  # a batch is on the compute thread (or held by the clock)
        self._gathering = False  # a loop turn is awaited before the next batch
        self._turns = 0  # turns waited so far for the next batch
        self._expected = 0  # ring steps the sessions closed by the last batch have yet to start
        self._closed = False
        self._waves: dict[tuple[int, str], Waves] = {}  # entry: by (epoch, route key)
        self._parked: list[Work] = []  # entry: ring starts waiting to join a wave
        # entry: sessions of a wave that came back to parked steps; their next
        # steps leave with those, they do not park in turn
        self._joiners: set[str] = set()
        self._release: asyncio.TimerHandle | None = None
        self._fuse = False  # the batch on the compute thread may start next ring steps

    @property
    def queued(self) -> int:
        return len(self._queue)

    def put(self, works: list[Work]) -> None:
        """Queue steps that arrived together (a batched frame's): they can run
        in one batch, which starts now if the compute is free."""
        for work in works:
            if work.hop == 0:
                self._expected -= 1
                joins = work.step.session_id in self._joiners
                self._joiners.discard(work.step.session_id)
                if work.step.step > 0 and not joins and self._park(work):
                    continue
            self._queue.append(work)
        self._kick()

    async def close(self) -> None:
        self._closed = True
        if self._release is not None:
            self._release.cancel()

    def forget(self, session_id: str) -> None:
        """The session will not come back to this entry (it failed, timed out,
        moved to another route or ended: ``Entry.end``)."""
        for waves in self._waves.values():
            waves.forget(session_id)
        self._joiners.discard(session_id)

    # ---- waves (core.waves): the entry keeps few, large groups on its ring ----------
    def _waves_of(self, w: Work) -> Waves:
        key = (w.es.epoch, w.route.key)  # a new epoch's route is a new pipeline
        waves = self._waves.get(key)
        if waves is None:
            now = time.monotonic()
            for old in [k for k, v in self._waves.items() if k[0] < key[0] and not v.out(now)]:
                del self._waves[old]  # a retired epoch's, drained
            n = self.limits.ring_waves or len({seg.node for seg in w.route.segments})
            waves = self._waves[key] = Waves(n)
        return waves

    def _park(self, work: Work) -> bool:
        """Hold a ring start while its route has as many waves out as it keeps."""
        waves = self._waves_of(work)
        if waves.hold_s() <= 0 or not waves.must_wait(time.monotonic()):
            return False
        self._parked.append(work)
        if self._release is None:
            self._release = asyncio.get_running_loop().call_later(waves.hold_s(),
                                                                  self._unpark)
        return True

    def _unpark(self, kick: bool = True) -> None:
        if self._release is not None:
            self._release.cancel()
            self._release = None
        self._queue += self._parked
        self._parked = []
        if kick:
            self._kick()

    def _count_waves(self, outcomes: list[Outcome]) -> bool:
        """Waves that left hop 0 and came back in these outcomes; True when one
        whole wave is back (the parked steps leave with it)."""
        now, whole = time.monotonic(), False
        for out in outcomes:
            if isinstance(out, Send):
                starts = [w.step.session_id for w in out.works if w.hop == 0]
                if starts:
                    self._waves_of(out.works[0]).depart(starts, now)
            elif isinstance(out, Closed):
                whole |= self._waves_of(out.work).back(out.work.step.session_id, now)
        return whole  # a failed session leaves its wave when the entry ends it (forget)

    def _kick(self) -> None:
        """Start the next batch if the compute is free: at once, unless the
        sessions the last batch closed have yet to start their next steps, or
        only new sessions' first steps wait, which others may be about to
        join (then a few loop turns later, with them: after a failover the
        sessions in flight replay together, in one prefill batch)."""
        if self._busy or self._gathering or not self._queue or self._closed:
            return
        if self._turns < _GATHER_TURNS and (
                self._expected > 0 or all(w.hop == 0 and w.step.step == 0 for w in self._queue)):
            self._gathering = True
            asyncio.get_running_loop().call_soon(self._turn)
            return
        self._turns = 0
        waiting, self._queue = self._queue, []
        self._fuse = self._may_fuse(waiting)
        self._busy = True
        self.compute.queued = len(waiting)
        self.compute.start(lambda timer: self._step(timer, waiting),
                           lambda result, error: self._ran(waiting, result, error))

    def _may_fuse(self, waiting: list[Work]) -> bool:
        """May the sessions whose rings close in this batch start their next
        steps in the same hand-off? Only when none of them would wait to join
        a wave (nothing is parked, and their routes will have fewer waves out
        than they keep once these are back), and no KV budget is set (the
        budget is the scheduler's to check, ``core.batching``)."""
        if self._parked or self.limits.kv_budget_bytes:
            return False
        now = time.monotonic()
        for w in waiting:
            if w.waiting is not None:
                waves = self._waves_of(w)
                if waves.out(now) > waves.max_waves:
                    return False
        return True

    def _turn(self) -> None:
        self._gathering = False
        self._turns += 1
        self._kick()

    def _ran(self, waiting: list[Work], result: tuple[list[Outcome], list[Work]] | None,
             error: Exception | None) -> None:
        if error is not None or result is None:
            outcomes, left = [Failed(waiting, self.node_id, error or RuntimeError())], []
        else:
            outcomes, left = result
        self._queue[:0] = left  # unfinished prompts and steps not taken keep their turn
        self.compute.queued = len(self._queue)
        self._expected = sum(isinstance(out, Closed) and out.next_at is None
                             for out in outcomes)
        self._busy = False
        if self._count_waves(outcomes) and self._parked:
            # The parked steps leave with the next steps of the sessions back
            # now, which therefore do not park, though other waves are still
            # out: two groups become one (else they would only take turns).
            self._joiners |= {out.work.step.session_id for out in outcomes
                              if isinstance(out, Closed)}
            self._unpark(kick=False)
        if not self._closed:
            self._deliver(outcomes)
            self._kick()

    # ---- on the compute thread ---------------------------------------------------------
    def _step(self, timer: Timer, waiting: list[Work]) -> tuple[list[Outcome], list[Work]]:
        """Schedule one batch from ``waiting`` and run it; (outcomes, still waiting)."""
        chains = [self._chain(w.es, w.route, w.hop) for w in waiting]
        kv_used = sum(r.kv_bytes() for r in self._runners()) if self.limits.kv_budget_bytes \
            else 0
        budget = bool(self.limits.kv_budget_bytes)  # only a budget needs the KV a step adds
        plan = plan_batch([Waiting(w.tokens - w.done, w.tokens == 1 and w.step.step > 0,
                                   sum(r.kv_bytes_per_token() for _, r in chain) if budget
                                   else 0)
                           for w, chain in zip(waiting, chains, strict=True)],
                          self.limits, kv_used)
        outcomes: list[Outcome] = []
        if plan.refused:
            outcomes.append(Failed([waiting[i] for i in plan.refused], self.node_id,
                                   TooLarge(f"{self.node_id}: KV budget of "
                                            f"{self.limits.kv_budget_bytes} bytes is full")))
        groups: dict[tuple[int, str, int], list[tuple[Work, int]]] = {}
        for i, n in plan.take:
            groups.setdefault(waiting[i].key, []).append((waiting[i], n))
        gone = {id(waiting[i]) for i in plan.refused}
        chain_of = {id(w): chain for w, chain in zip(waiting, chains, strict=True)}
        for rows in groups.values():
            try:
                outcomes += self._run(timer, rows, chain_of[id(rows[0][0])])
            except Exception as exc:  # noqa: BLE001 - the group's steps are reported failed
                outcomes.append(Failed([w for w, _ in rows], self.node_id, exc))
        gone |= {id(w) for out in outcomes if isinstance(out, Failed) for w in out.works}
        left = [w for w in waiting if id(w) not in gone and w.done < w.tokens]
        return outcomes, left

    def _chain(self, es: EpochState, route: Route, hop: int) -> list[tuple[int, Any]]:
        """The consecutive hops from ``hop`` this node runs, with their runners."""
        segments, chain = route.segments, []
        while True:
            chain.append((hop, es.runners[(route.key, hop)]))
            hop += 1
            if hop == len(segments) or segments[hop].node != self.node_id:
                return chain

    def _run(self, timer: Timer, rows: list[tuple[Work, int]],
             chain: list[tuple[int, Any]]) -> list[Outcome]:
        first = chain[0][1]
        stale = [w for w, _ in rows if not _in_place(first, w)]
        if stale:  # e.g. a session its entry gave up on: it alone fails, not the batch
            rows = [(w, n) for w, n in rows if _in_place(first, w)]
            w = stale[0]
            failed: list[Outcome] = [Failed(stale, self.node_id, PositionMismatch(
                w.step.session_id, first.session_length(w.step.session_id) or 0,
                w.step.start_pos + w.done))]
            return failed + (self._run(timer, rows, chain) if rows else [])
        xs = []
        for w, n in rows:
            if w.x is None:
                w.x = w.load(first)
            xs.append(w.x if n == w.tokens else first.slice_hidden(w.x, w.done, w.done + n))
        phase = "decode" if all(w.step.step > 0 for w, _ in rows) else "prefill"
        tokens = sum(n for _, n in rows)
        m.BATCH_STEPS.observe(len(rows))
        for _, runner in chain:
            steps = [(w.step.session_id, x, w.step.start_pos + w.done)
                     for (w, _), x in zip(rows, xs, strict=True)]
            xs = timer.run(runner, phase, tokens, lambda r=runner, s=steps: r.forward_batch(s))
        for (w, n), x in zip(rows, xs, strict=True):
            w.done += n
            w.outs.append(x)
        complete = [w for w, _ in rows if w.done == w.tokens]
        if not complete:
            return []
        route, last = complete[0].route, chain[-1]
        hop = last[0] + 1
        if hop == len(route.segments):  # the route's last hop is the entry's head: ring closes
            return self._close(timer, last[1], complete)
        return self._frames(complete[0].es, route, hop, last[1], complete)

    def _close(self, timer: Timer, head: Any, works: list[Work]) -> list[Outcome]:
        works = [w for w in works if w.waiting is not None]  # others timed out meanwhile
        if not works:
            return []

        def sample() -> list[int]:
            logits = head.head_batch([w.outs[-1] for w in works])
            return [w.waiting.sampler.choose(x) for w, x in zip(works, logits, strict=True)]

        tokens = timer.run(head, "head", len(works), sample)
        if not self._fuse:
            return [Closed(w, t) for w, t in zip(works, tokens, strict=True)]
        return self._next_steps(timer, works, tokens)

    def _next_steps(self, timer: Timer, works: list[Work], tokens: list[int]) -> list[Outcome]:
        """The ring closed: the token of each session that goes on (its entry
        said how to tell, ``waiting.more``) is embedded and run through hop 0
        here and now, in the same hand-off, instead of after a round through
        the event loop and a second hand-off (docs/data-plane.md, the
        per-token path). A session that stops or moves after all is ended by
        its entry, as it would be anyway, which drops that step."""
        at = time.perf_counter()
        es, route = works[0].es, works[0].route
        first = self._chain(es, route, 0)
        if first[-1][0] + 1 == len(route.segments):
            # The whole ring runs here (the device alone): the next step's ring
            # would close in this hand-off, before its entry waits for it.
            return [Closed(w, t) for w, t in zip(works, tokens, strict=True)]
        going = {id(w) for w, t in zip(works, tokens, strict=True)
                 if w.waiting.more is not None and w.waiting.more(t)}
        closed = [Closed(w, t, at if id(w) in going else None)
                  for w, t in zip(works, tokens, strict=True)]
        nexts = [Work(es, route, 0, Step(w.step.session_id, w.step.step + 1,
                                         w.step.start_pos + w.tokens), 1,
                      lambda r, t=t: r.embed([t]))
                 for w, t in zip(works, tokens, strict=True) if id(w) in going]
        if not nexts:
            return list(closed)
        m.NEXT_STEPS.inc(len(nexts))
        try:
            more = self._run(timer, [(n, 1) for n in nexts], first)
        except Exception as exc:  # noqa: BLE001 - the next steps are reported failed
            more = [Failed(nexts, self.node_id, exc)]
        return [*closed, *more]

    def _frames(self, es: EpochState, route: Route, hop: int, runner: Any,
                works: list[Work]) -> list[Outcome]:
        """One batched frame per ``chunk_bytes`` of the steps; a step larger than
        that goes alone, as the chunked frame of one session."""
        dst = route.segments[hop].node
        row_bytes = runner.hidden_size * WIRE_DTYPES[es.wire_dtype]
        groups: list[list[Work]] = []
        size = self.chunk_bytes
        for w in works:
            if size + w.tokens * row_bytes > self.chunk_bytes:
                groups.append([])
                size = 0
            groups[-1].append(w)
            size += w.tokens * row_bytes
        out: list[Outcome] = []
        for group in groups:
            headers = [FrameHeader(w.step.session_id, w.step.step, hop, es.epoch, self.node_id,
                                   dst, (1, w.tokens, runner.hidden_size), es.wire_dtype,
                                   entry=route.key, start_pos=w.step.start_pos)
                       for w in group]
            wire = runner.encode_batch([x for w in group for x in w.outs], es.wire_dtype)
            if len(group) == 1:
                messages = [na.LinkMessage(frame=f)
                            for f in seal(es, headers[0], wire, self.chunk_bytes)]
            else:
                messages = [na.LinkMessage(batch_frame=seal_batch(es, headers, wire))]
            out.append(Send(es, dst, group, messages))
        return out


def _in_place(runner: Any, w: Work) -> bool:
    """The session's cache at ``runner`` ends where the step's next rows start."""
    return (runner.session_length(w.step.session_id) or 0) == w.step.start_pos + w.done
