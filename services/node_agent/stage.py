"""One node's place in the ring: receive -> run -> forward (docs/data-plane.md).

A frame for hop ``h`` is opened and checked against this node's assignment
(epoch, route, hop, sender, dtype, shape, the session's position) and acked
on receipt; then the node runs hop ``h`` and any hops after it that it holds
too, in one hand-off to the compute thread, and sends the result on. Every
route ends with the head segment on its entry, so the ring closes in one
place: after the route's last hop, the entry's waiting step gets its token
(the head and sampling ran on the compute thread in the same hand-off).
Failures after the ack go to the entry as a ``StepFailure``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import grpc

from edgesplit.core.types import Route
from edgesplit.model.base import WireTensor
from edgesplit.model.errors import BadFrameDtype, BadFrameShape, PositionMismatch, SessionNotFound
from edgesplit.rpc.errors import InvalidRequest, NotFound, Precondition, status_of
from edgesplit.security.errors import FrameRejected
from edgesplit.security.header import FrameHeader
from edgesplit.v1 import node_agent_pb2 as na
from services.node_agent import metrics as m
from services.node_agent.compute import Compute, Timer
from services.node_agent.epochs import EpochBook, EpochState
from services.node_agent.frame_guard import check_finite
from services.node_agent.frames import Reassembly, open_frame, seal
from services.node_agent.linkstream import AckFuture, LinkPool, ack_error

log = logging.getLogger(__name__)
# hook (telemetry.py): frame_observer(dst, nbytes, seconds from send to ack)
FrameObserver = Callable[[str, int, float], None]
# The entry's end of a step, run on the compute thread after the last hop:
# finish(timer, hidden) -> token.
Finish = Callable[[Timer, Any], int]


class StepFailed(Exception):
    """A ring step could not complete; the entry may replay on another route."""

    def __init__(self, failed_node: str, code: str, detail: str) -> None:
        super().__init__(f"{failed_node}: {code}: {detail}")
        self.failed_node = failed_node
        self.code = code


@dataclass(frozen=True, slots=True)
class Step:
    """One session step as it travels: the frame header's session fields."""

    session_id: str
    step: int
    start_pos: int

    @property
    def phase(self) -> str:
        return "prefill" if self.step == 0 else "decode"


@dataclass(slots=True)
class _Waiting:
    future: asyncio.Future[int]
    finish: Finish


class Stage:
    def __init__(self, node_id: str, book: EpochBook, compute: Compute, links: LinkPool,
                 chunk_bytes: int) -> None:
        self.node_id = node_id
        self.book = book
        self.compute = compute
        self.links = links
        self.chunk_bytes = chunk_bytes
        self.frame_observer: FrameObserver | None = None
        self._waiting: dict[tuple[str, int], _Waiting] = {}
        self._chunks = Reassembly()
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    # ---- the entry's waiting steps --------------------------------------------------
    def wait(self, step: Step, finish: Finish) -> asyncio.Future[int]:
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting[(step.session_id, step.step)] = _Waiting(fut, finish)
        fut.add_done_callback(lambda _: self._waiting.pop((step.session_id, step.step), None))
        return fut

    def fail_step(self, session_id: str, step: int, failure: Exception) -> bool:
        w = self._waiting.get((session_id, step))
        if w is None or w.future.done():
            return False
        w.future.set_exception(failure)
        return True

    # ---- link messages in ------------------------------------------------------------
    def on_message(self, msg: na.LinkMessage) -> na.LinkAck:
        """Handle one message and say so at once; errors become the ack's status."""
        try:
            kind = msg.WhichOneof("kind")
            if kind == "frame":
                self._on_frame(msg.frame)
            elif kind == "end_session":
                self._on_end(msg.end_session)
            elif kind == "step_failure":
                f = msg.step_failure
                if not self.fail_step(f.session_id, f.step,
                                      StepFailed(f.failed_node, f.code, f.detail)):
                    raise NotFound(f"no step {f.step} of session {f.session_id} waiting")
            else:
                raise InvalidRequest("empty link message")
        except Exception as exc:
            code = status_of(exc)
            if code is None:
                log.exception("link message refused")
                code = grpc.StatusCode.INTERNAL
            return na.LinkAck(seq=msg.seq, code=code.value[0], detail=str(exc)[:500])
        return na.LinkAck(seq=msg.seq)

    def _on_end(self, end: na.EndSession) -> None:
        if not end.session_id:
            raise InvalidRequest("session_id is empty")
        self._chunks.forget(end.session_id)
        existed = False
        for runner in self.book.all_runners():
            existed |= bool(runner.end_session(end.session_id))
        if not existed:
            raise NotFound(f"unknown session {end.session_id!r}")

    def _on_frame(self, frame: na.Frame) -> None:
        es = self.book.get(frame.header.epoch)
        if es is None:
            raise Precondition(f"epoch {frame.header.epoch} is not held by {self.node_id}")
        try:
            if frame.header.dtype != es.wire_dtype:
                raise BadFrameDtype(f"frame dtype {frame.header.dtype}, assignment says "
                                    f"{es.wire_dtype}")
            route, h, data = open_frame(es, self.node_id, frame, self._chunks)
            if data is None:
                return  # more chunks to come
            if h.hop == len(route.segments) - 1 and (h.session_id, h.step) not in self._waiting:
                raise NotFound(f"no step {h.step} of session {h.session_id} is waiting")
            runner = es.runners[(h.entry, h.hop)]
            wire = WireTensor(data, h.shape, h.dtype)
            _check_step(runner, wire, h)
            check_finite(wire)  # hook: frame_guard.py (NaN / inf: INVALID_ARGUMENT)
        except (FrameRejected, BadFrameShape, BadFrameDtype) as exc:
            reason = exc.reason if isinstance(exc, FrameRejected) else \
                "bad_dtype" if isinstance(exc, BadFrameDtype) else "bad_shape"
            m.FRAMES_REJECTED.labels(reason).inc()
            raise
        m.FRAMES_RECEIVED.labels(h.src).inc()
        self.advance(es, route, h.hop, Step(h.session_id, h.step, h.start_pos),
                     lambda r: r.decode_hidden(wire))

    # ---- run and forward -------------------------------------------------------------
    def advance(self, es: EpochState, route: Route, hop: int, step: Step,
                load: Callable[[Any], Any]) -> None:
        """Run this node's consecutive hops from ``hop`` (``load(runner)`` makes
        the first input), then forward, or close the ring. The compute thread
        starts on it before this returns."""
        waiting = self._waiting.get((step.session_id, step.step)) \
            if route.segments[-1].node == self.node_id else None
        running = self.compute.submit(
            lambda timer: self._run(timer, es, route, hop, step, load, waiting))
        self.spawn(self._forward(es, route, step, waiting, running))

    async def _forward(self, es: EpochState, route: Route, step: Step,
                       waiting: _Waiting | None,
                       running: Coroutine[Any, Any, int | tuple[str, list[na.Frame]] | None]
                       ) -> None:
        """Send what the compute made on, or close the ring. Failures are
        reported to the entry, never swallowed."""
        dst = self.node_id
        try:
            out = await running
            if out is None or isinstance(out, int):  # the ring closed here
                if waiting is not None and out is not None and not waiting.future.done():
                    waiting.future.set_result(out)
                return
            dst, frames = out
            await self._send(es, dst, frames)
        except Exception as exc:  # noqa: BLE001 - reported to the entry below
            code = status_of(exc) or grpc.StatusCode.UNKNOWN
            log.warning("step %s/%d failed towards %s: %s", step.session_id, step.step, dst, exc)
            await self.report_failure(es, route.entry, step, dst, code.name, str(exc))

    def _run(self, timer: Timer, es: EpochState, route: Route, hop: int, step: Step,
             load: Callable[[Any], Any], waiting: _Waiting | None
             ) -> int | tuple[str, list[na.Frame]] | None:
        """On the compute thread: the local hops, then the head or the next frame."""
        n = len(route.segments)
        runner = es.runners[(route.key, hop)]
        x = load(runner)
        while True:
            x = timer.run(runner, step.phase, int(x.shape[1]),
                          lambda r=runner, x=x: r.forward(step.session_id, x, step.start_pos))
            hop += 1
            if hop == n or route.segments[hop].node != self.node_id:
                break
            runner = es.runners[(route.key, hop)]
        if hop == n:  # the route's last hop is the entry's head: the ring closes
            return waiting.finish(timer, x) if waiting is not None else None
        dst = route.segments[hop].node
        header = FrameHeader(step.session_id, step.step, hop, es.epoch, self.node_id, dst, (),
                             es.wire_dtype, entry=route.key, start_pos=step.start_pos)
        return dst, seal(es, header, runner.encode_hidden(x, es.wire_dtype), self.chunk_bytes)

    async def _send(self, es: EpochState, dst: str, frames: list[na.Frame]) -> None:
        link = es.peers.get(dst)
        if link is None:
            raise Precondition(f"{dst} is not a peer of {self.node_id} in epoch {es.epoch}")
        sender = self.links.get(dst, link.address)
        for frame in frames:
            size = frame.ByteSize()
            sent = time.perf_counter()
            ack = await sender.send(na.LinkMessage(frame=frame))
            m.FRAMES_SENT.labels(dst).inc()
            m.BYTES_SENT.labels(dst).inc(size)
            ack.add_done_callback(lambda f, s=size, t=sent, h=frame.header:
                                  self._acked(es, dst, h, s, t, f))

    def _acked(self, es: EpochState, dst: str, h: na.FrameHeader, size: int, sent: float,
               fut: AckFuture) -> None:
        failure = fut.exception()
        error = ("UNAVAILABLE", str(failure)) if failure is not None else ack_error(fut.result())
        if error is None:
            if self.frame_observer is not None:  # hook: passive link timing
                self.frame_observer(dst, size, time.perf_counter() - sent)
            return
        log.warning("frame %s/%d refused by %s: %s", h.session_id, h.step, dst, error)
        if h.chunk == 0 or failure is None:  # one report per broken frame
            self.spawn(self.report_failure(es, h.entry, Step(h.session_id, h.step, h.start_pos),
                                           dst, *error))

    async def report_failure(self, es: EpochState, entry: str, step: Step, failed_node: str,
                             code: str, detail: str) -> None:
        if entry == self.node_id:
            self.fail_step(step.session_id, step.step, StepFailed(failed_node, code, detail))
            return
        link = es.peers.get(entry)
        if link is None:
            return
        msg = na.LinkMessage(step_failure=na.StepFailure(
            session_id=step.session_id, step=step.step, epoch=es.epoch, reporter=self.node_id,
            failed_node=failed_node, code=code, detail=detail[:500]))
        try:  # if even this fails, the entry times the step out
            sent = await self.links.get(entry, link.address).send(msg)
            sent.add_done_callback(_best_effort)
        except Exception as exc:  # noqa: BLE001
            log.warning("could not report failure to entry %s: %s", entry, exc)

    async def end_remote(self, es: EpochState, nodes: set[str], session_id: str) -> None:
        """Tell ``nodes`` to drop a session (best effort: idle eviction frees it anyway)."""
        for node in nodes:
            link = es.peers.get(node)
            if link is None:
                continue
            try:
                sent = await self.links.get(node, link.address).send(na.LinkMessage(
                    end_session=na.EndSession(session_id=session_id, epoch=es.epoch)))
            except Exception as exc:  # noqa: BLE001 - e.g. a cut link
                log.debug("EndSession to %s not sent: %s", node, exc)
                continue
            sent.add_done_callback(_best_effort)


def _best_effort(fut: AckFuture) -> None:
    """A message nobody waits on: its failure is retrieved (and dropped) here."""
    if not fut.cancelled() and fut.exception() is not None:
        log.debug("link message lost: %s", fut.exception())


def _check_step(runner: Any, wire: WireTensor, h: FrameHeader) -> None:
    """What the runner would refuse, refused before the ack: shape, and the
    session's position (a duplicated or skipped step)."""
    if len(wire.shape) != 3 or wire.shape[0] != 1 or wire.shape[1] < 1 \
            or wire.shape[2] != runner.hidden_size:
        raise BadFrameShape(f"frame shape {wire.shape}, expected (1, T, {runner.hidden_size})")
    cached = runner.session_length(h.session_id)
    if cached is None and h.start_pos != 0:
        raise SessionNotFound(h.session_id)
    if cached is not None and cached != h.start_pos:
        raise PositionMismatch(h.session_id, cached, h.start_pos)
