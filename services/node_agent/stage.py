"""One node's place in the ring: receive -> run -> forward (docs/data-plane.md).

A frame for hop ``h`` (or a batched frame: the steps of several sessions at
hop ``h``) is opened and checked against this node's assignment (epoch,
route, hop, sender, dtype, shape, each session's position) on receipt (a
refusal is acked at once, accepted messages when the sender asks:
linkstream.py); then its steps join the node's batch queue (``batcher.py``), which
runs hop ``h`` and any hops after it that the node holds too, for all the
steps waiting, and sends the results on. Every route ends with the head
segment on its entry, so the ring closes in one place: after the route's
last hop, the entry's waiting step gets its token (the head and sampling ran
on the compute thread in the same batch). Failures after the ack go to the
entry as a ``StepFailure``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import grpc

from edgesplit.core.batching import BatchLimits
from edgesplit.core.types import Route
from edgesplit.model.base import TokenSampler, WireTensor
from edgesplit.model.errors import BadFrameDtype, BadFrameShape, PositionMismatch, SessionNotFound
from edgesplit.rpc.convert import status_code, status_name
from edgesplit.rpc.errors import InvalidRequest, NotFound, Precondition, status_of
from edgesplit.security.errors import FrameRejected
from edgesplit.security.header import FrameHeader
from edgesplit.v1 import node_agent_pb2 as na
from services.node_agent import metrics as m
from services.node_agent.batcher import Batcher, Closed, Failed, Outcome, Send, Step, Work
from services.node_agent.compute import Compute
from services.node_agent.epochs import EpochBook, EpochState
from services.node_agent.frame_guard import check_finite
from services.node_agent.frames import Reassembly, open_batch, open_frame
from services.node_agent.linkstream import AckFuture, LinkPool, ack_error

log = logging.getLogger(__name__)
# hook (telemetry.py): frame_observer(dst, nbytes, seconds from send to ack)
FrameObserver = Callable[[str, int, float], None]
__all__ = ["Stage", "Step", "StepFailed"]


class StepFailed(Exception):
    """A ring step could not complete; the entry may replay on another route."""

    def __init__(self, failed_node: str, code: str, detail: str) -> None:
        super().__init__(f"{failed_node}: {code}: {detail}")
        self.failed_node = failed_node
        self.code = code


@dataclass(slots=True)
class _Waiting:
    future: asyncio.Future[int]
    sampler: TokenSampler  # picks the token on the compute thread, after the head
    # on the compute thread, after the token: does the session take its next
    # step at once with that token (batcher.py starts it in the same hand-off)?
    more: Callable[[int], bool] | None = None
    started_at: float | None = None  # set when the batcher started the step itself


class Stage:
    def __init__(self, node_id: str, book: EpochBook, compute: Compute, links: LinkPool,
                 chunk_bytes: int, limits: BatchLimits | None = None) -> None:
        self.node_id = node_id
        self.book = book
        self.compute = compute
        self.links = links
        self.chunk_bytes = chunk_bytes
        self.batcher = Batcher(node_id, compute, limits or BatchLimits(), chunk_bytes,
                               book.all_runners, self._deliver)
        self.frame_observer: FrameObserver | None = None
        self._waiting: dict[tuple[str, int], _Waiting] = {}
        self._chunks = Reassembly()
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        await self.batcher.close()
        for task in list(self._tasks):
            task.cancel()

    # ---- the entry's waiting steps --------------------------------------------------
    def wait(self, step: Step, sampler: TokenSampler,
             more: Callable[[int], bool] | None = None,
             started_at: float | None = None) -> asyncio.Future[int]:
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        key = (step.session_id, step.step)
        self._waiting[key] = w = _Waiting(fut, sampler, more, started_at)

        def done(_: asyncio.Future[int]) -> None:
            if self._waiting.get(key) is w:  # not a later wait for the same step
                del self._waiting[key]

        fut.add_done_callback(done)
        return fut

    def started(self, step: Step, more: Callable[[int], bool] | None
                ) -> tuple[asyncio.Future[int], float] | None:
        """The step, if the batcher already started it when the last one's ring
        closed: (its token's future, when it started); ``more`` as for ``wait``."""
        w = self._waiting.get((step.session_id, step.step))
        if w is None or w.started_at is None:
            return None
        w.more = more
        return w.future, w.started_at

    def drop_started(self, session_id: str) -> None:
        """The session ends here: a step the batcher started for it is not waited for."""
        for key in [k for k, w in self._waiting.items()
                    if k[0] == session_id and w.started_at is not None]:
            self._waiting[key].future.cancel()

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
            elif kind == "batch_frame":
                self._on_batch(msg.batch_frame)
            elif kind == "end_session":
                self._on_end(msg.end_session)
            elif kind == "step_failure":
                f = msg.step_failure
                if not self.fail_step(f.session_id, f.step,
                                      StepFailed(f.failed_node, status_name(f.code), f.detail)):
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

    def _epoch(self, epoch: int) -> EpochState:
        es = self.book.get(epoch)
        if es is None:
            raise Precondition(f"epoch {epoch} is not held by {self.node_id}")
        return es

    def _check_arrival(self, es: EpochState, route: Route, runner: Any, h: FrameHeader,
                       shape: tuple[int, ...]) -> None:
        if h.hop == len(route.segments) - 1 and (h.session_id, h.step) not in self._waiting:
            raise NotFound(f"no step {h.step} of session {h.session_id} is waiting")
        _check_step(runner, shape, h)

    def _on_frame(self, frame: na.Frame) -> None:
        es = self._epoch(frame.header.epoch)
        try:
            if frame.header.dtype != es.wire_dtype:
                raise BadFrameDtype(f"frame dtype {frame.header.dtype}, assignment says "
                                    f"{es.wire_dtype}")
            route, h, data = open_frame(es, self.node_id, frame, self._chunks)
            if data is None:
                return  # more chunks to come
            runner = es.runners[(h.entry, h.hop)]
            wire = WireTensor(data, h.shape, h.dtype)
            self._check_arrival(es, route, runner, h, wire.shape)
            check_finite(wire)  # hook: frame_guard.py (NaN / inf: INVALID_ARGUMENT)
        except (FrameRejected, BadFrameShape, BadFrameDtype) as exc:
            m.FRAMES_REJECTED.labels(_reason(exc)).inc()
            raise
        m.FRAMES_RECEIVED.labels(h.src).inc()
        self.advance(es, route, h.hop, Step(h.session_id, h.step, h.start_pos), h.shape[1],
                     lambda r: r.decode_hidden(wire))

    def _on_batch(self, frame: na.BatchFrame) -> None:
        """A batched frame: checked and opened once, every session's step
        checked as a frame's would be; then all of them join the queue, their
        rows decoded once, as one tensor, when the first of them runs."""
        if not frame.headers:
            raise InvalidRequest("batch frame without headers")
        es = self._epoch(frame.headers[0].epoch)
        try:
            if any(h.dtype != es.wire_dtype for h in frame.headers):
                raise BadFrameDtype(f"batch frame dtype, assignment says {es.wire_dtype}")
            route, batch, data = open_batch(es, self.node_id, frame)
            hop = batch.headers[0].hop
            runner = es.runners[(route.key, hop)]
            live = {h.session_id for h in batch.headers if self._arrives(es, route, runner, h)}
            wire = WireTensor(data, (1, sum(h.shape[1] for h in batch.headers),
                                     runner.hidden_size), batch.headers[0].dtype)
            check_finite(wire)  # hook: frame_guard.py, the whole batch at once
        except (FrameRejected, BadFrameShape, BadFrameDtype) as exc:
            m.FRAMES_REJECTED.labels(_reason(exc)).inc()
            raise
        m.FRAMES_RECEIVED.labels(batch.src).inc()
        rows: list[Any] = []

        def row(r: Any, i: int) -> Any:
            if not rows:
                rows.extend(r.decode_batch(wire, [h.shape[1] for h in batch.headers]))
            return rows[i]

        self.batcher.put([self._work(es, route, hop, Step(h.session_id, h.step, h.start_pos),
                                     h.shape[1], lambda r, i=i: row(r, i))
                          for i, h in enumerate(batch.headers) if h.session_id in live])

    def _arrives(self, es: EpochState, route: Route, runner: Any, h: FrameHeader) -> bool:
        """A session's step in a batched frame: a wrong shape refuses the frame;
        a step its entry no longer waits for is dropped, and one that does not
        fit its session's cache is reported to the entry, the others run on."""
        try:
            self._check_arrival(es, route, runner, h, h.shape)
        except (NotFound, PositionMismatch, SessionNotFound) as exc:
            if not isinstance(exc, NotFound):
                code = status_of(exc) or grpc.StatusCode.UNKNOWN
                self.spawn(self.report_failure(es, route.entry,
                                               Step(h.session_id, h.step, h.start_pos),
                                               self.node_id, code.name, str(exc)))
            return False
        return True

    # ---- run and forward -------------------------------------------------------------
    def advance(self, es: EpochState, route: Route, hop: int, step: Step, tokens: int,
                load: Callable[[Any], Any]) -> None:
        """Queue a step of ``tokens`` positions for this node's consecutive hops
        from ``hop`` (``load(runner)`` makes its input, on the compute thread);
        the batch it runs in forwards it, or closes the ring."""
        self.batcher.put([self._work(es, route, hop, step, tokens, load)])

    def _work(self, es: EpochState, route: Route, hop: int, step: Step, tokens: int,
              load: Callable[[Any], Any]) -> Work:
        waiting = self._waiting.get((step.session_id, step.step)) \
            if route.segments[-1].node == self.node_id else None
        return Work(es, route, hop, step, tokens, load, waiting)

    def _deliver(self, outcomes: list[Outcome]) -> None:
        """What a batch made: tokens to the entry's waiting steps, messages onto
        the links, failures to the entries (never swallowed)."""
        for out in outcomes:  # first: the steps started with the tokens are waited for
            if isinstance(out, Closed) and out.next_at is not None:
                w = out.work
                self.wait(Step(w.step.session_id, w.step.step + 1, w.step.start_pos + w.tokens),
                          w.waiting.sampler, started_at=out.next_at)
        for out in outcomes:
            if isinstance(out, Closed):
                if not out.work.waiting.future.done():
                    out.work.waiting.future.set_result(out.token)
            elif isinstance(out, Send):
                self.spawn(self._send(out))
            elif isinstance(out, Failed):
                self._failed(out.works, out.dst, out.error)

    def _failed(self, works: list[Work], dst: str, exc: Exception) -> None:
        code = status_of(exc) or grpc.StatusCode.UNKNOWN
        for w in works:
            log.warning("step %s/%d failed towards %s: %s", w.step.session_id, w.step.step,
                        dst, exc)
            self.spawn(self.report_failure(w.es, w.route.entry, w.step, dst, code.name,
                                           str(exc)))

    async def _send(self, out: Send) -> None:
        es, dst = out.es, out.dst
        try:
            link = es.peers.get(dst)
            if link is None:
                raise Precondition(f"{dst} is not a peer of {self.node_id} in epoch {es.epoch}")
            sender = self.links.get(dst, link.address)
            for msg in out.messages:
                size = msg.ByteSize()
                sent = time.perf_counter()
                ack = await sender.send(msg, size)
                m.FRAMES_SENT.labels(dst).inc()
                m.BYTES_SENT.labels(dst).inc(size)
                first = msg.WhichOneof("kind") == "batch_frame" or msg.frame.header.chunk == 0
                ack.add_done_callback(lambda f, s=size, t=sent, first=first, msg=msg:
                                      self._acked(out, msg, s, t, first, f))
        except Exception as exc:  # noqa: BLE001 - reported to the entry
            self._failed(out.works, dst, exc)

    def _acked(self, out: Send, msg: na.LinkMessage, size: int, sent: float, first: bool,
               fut: AckFuture) -> None:
        failure = fut.exception()
        error = ("UNAVAILABLE", str(failure)) if failure is not None else ack_error(fut.result())
        if error is None:
            # hook: passive link timing, from the messages acked at once (an ack
            # that covers this one on its way back for a later one times nothing)
            if self.frame_observer is not None and fut.result().seq == msg.seq:
                self.frame_observer(out.dst, size, time.perf_counter() - sent)
            return
        log.warning("frame of %d step(s) refused by %s: %s", len(out.works), out.dst, error)
        if first or failure is None:  # one report per broken frame
            for w in out.works:
                self.spawn(self.report_failure(w.es, w.route.entry, w.step, out.dst, *error))

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
            failed_node=failed_node, code=status_code(code), detail=detail[:500]))
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


def _reason(exc: Exception) -> str:
    return exc.reason if isinstance(exc, FrameRejected) else \
        "bad_dtype" if isinstance(exc, BadFrameDtype) else "bad_shape"


def _check_step(runner: Any, shape: tuple[int, ...], h: FrameHeader) -> None:
    """What the runner would refuse, refused before the ack: shape, and the
    session's position (a duplicated or skipped step)."""
    if len(shape) != 3 or shape[0] != 1 or shape[1] < 1 or shape[2] != runner.hidden_size:
        raise BadFrameShape(f"frame shape {shape}, expected (1, T, {runner.hidden_size})")
    cached = runner.session_length(h.session_id)
    if cached is None and h.start_pos != 0:
        raise SessionNotFound(h.session_id)
    if cached is not None and cached != h.start_pos:
        raise PositionMismatch(h.session_id, cached, h.start_pos)
