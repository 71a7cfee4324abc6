"""The entry node's side of a request: route, ring steps, replay (docs/data-plane.md).

The entry embeds and runs hop 0, the ring carries hidden states, and the
route's last hop — the head segment, on this node — samples the next token.
The entry keeps each request's token history, so when a step fails or the
session's epoch is retired it replays the history on the current route
(new hops rebuild their KV caches) and the caller's stream just continues.
A session whose steps miss the SLA on an epoch a newer one has superseded
replays on the newer route at once instead of draining on the old one: the
reconfiguration was made for it too. So does a step still out past the SLA
once a newer epoch commits (its frames may be lost on a dead node).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from edgesplit.core.ewma import ewma_step
from edgesplit.core.route_choice import STEP_ALPHA, RouteLoad, choose_route
from edgesplit.core.trust import listed, untrusted_sensitive
from edgesplit.core.types import Privacy, Route
from edgesplit.errors import PRIVACY_UNSATISFIABLE
from edgesplit.model.base import SamplingParams, SegmentRunner, TokenSampler
from edgesplit.rpc.convert import PRIVACY
from edgesplit.rpc.errors import Precondition, TooLarge, Unavailable
from edgesplit.v1 import orchestrator_pb2, orchestrator_pb2_grpc
from services.node_agent import metrics as m
from services.node_agent.control import Control
from services.node_agent.epochs import EpochState
from services.node_agent.stage import Stage, Step, StepFailed

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 4  # failed steps of one request before it fails UNAVAILABLE
# hook (telemetry.py): request_observer(ttft_s, step_latencies_s, ok) when a request ends
RequestObserver = Callable[[float, Sequence[float], bool], None]


def privacy_ok(es: EpochState, route: Route) -> bool:
    """Sensitive parts only on nodes the signed assignment lists as trusted
    (the entry too): the one check of ``edgesplit.core.trust``."""
    return not untrusted_sensitive(route, es.assignment.privacy_depth, listed(es.trusted))


@dataclass(frozen=True, slots=True)
class EntrySettings:
    node_id: str
    step_timeout_s: float
    orchestrator: str = ""  # asked for a private route when privacy=high finds none
    sla_step_s: float = 0.15  # decode-step target new sessions are placed against
    default_privacy: Privacy = Privacy.LOW  # for a request that states none (UNSPECIFIED)


class RouteStats:
    """What this entry measures of its routes (by route key), for ``choose_route``."""

    def __init__(self) -> None:
        self.active: dict[str, int] = {}
        self.step_s: dict[str, float] = {}

    def load(self, key: str) -> RouteLoad:
        return RouteLoad(key, self.active.get(key, 0), self.step_s.get(key))

    def started(self, key: str) -> None:
        self.active[key] = self.active.get(key, 0) + 1

    def ended(self, key: str) -> None:
        left = self.active.get(key, 0) - 1
        if left > 0:
            self.active[key] = left
        else:
            self.active.pop(key, None)

    def step(self, key: str, seconds: float) -> None:
        self.step_s[key] = ewma_step(self.step_s.get(key), seconds, STEP_ALPHA)


class _Ring:
    """The route one attempt of a request runs on, and its session there."""

    def __init__(self, es: EpochState, route: Route, session_id: str) -> None:
        self.es, self.route, self.session_id = es, route, session_id
        head = es.runners.get((route.key, len(route.segments) - 1))
        if head is None or not head.spec.has_head:
            raise Precondition(f"route {route.key} does not end with the head on it")
        self.head: SegmentRunner[Any] = head
        self.cached = 0  # tokens of the history the hops hold
        self.step = 0
        self.key = route.key
        self.counted = False  # in RouteStats.active
        self.last_step_s = 0.0  # the latest decode step's time, on this route


class Entry:
    def __init__(self, settings: EntrySettings, control: Control, stage: Stage) -> None:
        self.s = settings
        self.control = control
        self.book = control.book
        self.stage = stage
        self.request_observer: RequestObserver | None = None
        self.stats = RouteStats()

    # ---- routes ------------------------------------------------------------------------
    def route(self, privacy: Privacy) -> tuple[EpochState, Route]:
        """The committed route a new session takes: of this entry's routes (one
        per replica) the one with the most SLA headroom (``core.route_choice``)."""
        es = self.book.committed
        if es is None:
            raise Unavailable("no committed epoch yet on this entry node")
        mine = [r for r in es.routes.values() if r.entry == self.s.node_id]
        if not mine:
            raise Precondition(f"{self.s.node_id} is not an entry node in epoch {es.epoch}",
                               error_reason="NOT_AN_ENTRY")
        if privacy is Privacy.HIGH:
            mine = [r for r in mine if privacy_ok(es, r)]
            if not mine:
                raise Precondition("privacy=high: the route puts sensitive layers on nodes "
                                   "this entry does not trust", field="privacy",
                                   error_reason=PRIVACY_UNSATISFIABLE)
        if len(mine) == 1:
            return es, mine[0]
        key = choose_route([self.stats.load(r.key) for r in mine], self.s.sla_step_s)
        return es, es.routes[key]

    async def private_route(self, privacy: Privacy) -> tuple[EpochState, Route]:
        """The newest route the request may use. A privacy=high request with no
        private route asks the orchestrator to make one, then waits for its
        epoch; FAILED_PRECONDITION only when no plan can satisfy it (or nobody
        can be asked). Also used on replay: the failover plan may differ."""
        try:
            return self.route(privacy)
        except Precondition:
            if privacy is not Privacy.HIGH or not self.s.orchestrator:
                raise
        stub = orchestrator_pb2_grpc.OrchestratorStub(
            self.stage.links.channel(self.s.orchestrator))
        reply = await stub.EnsureRoute(  # a FAILED_PRECONDITION passes through
            orchestrator_pb2.EnsureRouteRequest(entry=self.s.node_id,
                                                privacy=PRIVACY.encode(privacy)),
            timeout=self.s.step_timeout_s)
        await self.control.committed_when(lambda es: es.epoch >= reply.epoch,
                                          self.s.step_timeout_s)
        return self.route(privacy)

    def head(self, es: EpochState, route: Route) -> SegmentRunner[Any]:
        return _Ring(es, route, "").head

    # ---- one request -------------------------------------------------------------------
    async def run(self, request_id: str, history: list[int], max_new: int,
                  sampling: SamplingParams, privacy: Privacy, es: EpochState, route: Route,
                  stop: Callable[[int], bool]) -> AsyncIterator[tuple[int, int, float]]:
        """Generate up to ``max_new`` tokens after ``history`` (extended in place);
        yields (token, epoch, perf_counter when it was made) per step, stopping
        after a token ``stop`` accepts."""
        ring = self._start(_Ring(es, route, f"{request_id}.0"))
        sampler = ring.head.new_sampler(sampling)
        prompt_len, attempt, failures = len(history), 0, 0
        try:
            while len(history) - prompt_len < max_new:
                try:
                    if self.book.get(ring.es.epoch) is None or self._outpaced(ring, privacy):
                        raise _Retired
                    token = await self._ring_step(
                        ring, history, sampler, privacy,
                        _goes_on(len(history) + 1 - prompt_len, max_new, stop))
                except (StepFailed, _Retired) as exc:
                    if isinstance(exc, StepFailed) and exc.code == "RESOURCE_EXHAUSTED":
                        raise TooLarge(f"step refused: {exc}") from exc  # a replay would be too
                    if isinstance(exc, StepFailed):
                        failures += 1
                        if failures >= MAX_ATTEMPTS:
                            raise Unavailable(f"step failed {failures} times: {exc}") from exc
                        log.warning("request %s: %s; replaying", request_id, exc)
                        # Give the control plane a moment to fail over.
                        await self.control.committed_when(
                            lambda e, failed=ring.es.epoch: e.epoch != failed,
                            self.s.step_timeout_s)
                    self.end(ring)
                    attempt += 1
                    ring = self._start(_Ring(*await self.private_route(privacy),
                                             f"{request_id}.{attempt}"))
                    m.REPLAYS.inc()
                    continue
                history.append(token)
                yield token, ring.es.epoch, time.perf_counter()
                if stop(token):
                    break
        finally:
            self.end(ring)

    async def _ring_step(self, ring: _Ring, history: list[int], sampler: TokenSampler,
                         privacy: Privacy, more: Callable[[int], bool]) -> int:
        """Embed the tokens the hops lack, send them round, get the next token
        (``more(token)``: will the session step again at once after it?)."""
        step = Step(ring.session_id, ring.step, ring.cached)
        started = self.stage.started(step, more)
        if started is not None:  # the batcher started it when the last ring closed
            done, sent = started
        else:
            feed = history[ring.cached:]
            done = self.stage.wait(step, sampler, more)
            sent = time.perf_counter()
            # Joins the node's next batch with the other sessions' steps (batcher.py).
            self.stage.advance(ring.es, ring.route, 0, step, len(feed),
                               lambda r: r.embed(feed))
        token = await self._returned(ring, done, sent, privacy)
        if ring.cached:  # a decode step (a prefill is no sample of the step time)
            ring.last_step_s = time.perf_counter() - sent
            self.stats.step(ring.key, ring.last_step_s)
        ring.cached, ring.step = len(history), ring.step + 1
        return token

    async def _returned(self, ring: _Ring, done: asyncio.Future[int], sent: float,
                        privacy: Privacy) -> int:
        """The step's token. A step still out past the SLA while a newer epoch
        has a route for the session is given up (``_Retired``: it replays there)
        instead of waited for until ``step_timeout_s``: its frames may sit on a
        node that died further along the ring, which nobody is left to report
        (smart-city-surge: 8 s stalls after an edge server in mid-route died)."""
        deadline = sent + self.s.step_timeout_s
        try:
            while True:
                left = deadline - time.perf_counter()
                if left <= 0:
                    raise StepFailed("", "DEADLINE_EXCEEDED", f"step {ring.step} did not "
                                     f"return in {self.s.step_timeout_s}s")
                await self._token_or_newer(ring, done, sent, min(left, self.s.sla_step_s))
                if done.done():
                    return done.result()
                ring.last_step_s = max(ring.last_step_s, time.perf_counter() - sent)
                if self._outpaced(ring, privacy):
                    raise _Retired
        finally:
            done.cancel()  # given up (or cancelled): the step waits here no more

    async def _token_or_newer(self, ring: _Ring, done: asyncio.Future[int], sent: float,
                              timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for the step's token (``asyncio.wait`` leaves
        ``done`` running). A step already out past the SLA, while no newer epoch
        is committed, also wakes when one commits: it may move there at once, so
        a stall on a node that died lasts until the failover commits, not until
        the entry's next SLA tick (smart-city: up to 0.4 s more, for every
        request in flight at the kill)."""
        newest = self.book.committed
        if time.perf_counter() - sent <= self.s.sla_step_s \
                or (newest is not None and newest.epoch > ring.es.epoch):
            await asyncio.wait((done,), timeout=timeout_s)
            return
        newer = asyncio.ensure_future(self.control.committed_when(
            lambda es, mine=ring.es.epoch: es.epoch > mine, timeout_s))
        try:
            await asyncio.wait((done, newer), timeout=timeout_s,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            newer.cancel()

    def _outpaced(self, ring: _Ring, privacy: Privacy) -> bool:
        """Should the session leave its epoch for a newer one? Only when its
        last step missed the SLA (a replay costs a prefill of the history, not
        worth paying for a route that serves it well) and the newer epoch has a
        route it may take."""
        newest = self.book.committed
        if newest is None or newest.epoch <= ring.es.epoch \
                or ring.last_step_s <= self.s.sla_step_s:
            return False
        try:
            self.route(privacy)
        except (Precondition, Unavailable):
            return False
        m.MIGRATED.inc()
        return True

    def _start(self, ring: _Ring) -> _Ring:
        self.stats.started(ring.key)
        ring.counted = True
        return ring

    def end(self, ring: _Ring) -> None:
        """Drop the session here and on the route's other nodes."""
        self.stage.batcher.forget(ring.session_id)  # its wave waits for it no more
        self.stage.drop_started(ring.session_id)
        if ring.counted:
            ring.counted = False
            self.stats.ended(ring.key)
        for runner in {id(r): r for r in ring.es.runners.values()}.values():
            runner.end_session(ring.session_id)
        others = {seg.node for seg in ring.route.segments} - {self.s.node_id}
        if others:
            self.stage.spawn(self.stage.end_remote(ring.es, others, ring.session_id))


def _goes_on(made: int, max_new: int, stop: Callable[[int], bool]) -> Callable[[int], bool]:
    """After a step whose token is the ``made``-th generated: does the request
    step again at once with that token? (Run on the compute thread.)"""
    return lambda token: made < max_new and not stop(token)


class _Retired(Exception):
    """The session's epoch is no longer held: replay on the newest route."""
