"""Frames around the ring: receive, verify, run, forward (docs/architecture.md §3).

A frame addressed to hop ``h`` of a route is opened (AEAD: tampered, replayed
or misrouted frames fail here), checked against this node's assignment, run
through the hop's layers, and — after the sender has its ack — sent on to the
next hop. The frame after the last segment returns to the entry node, which
hands it to the waiting ``Generate`` step.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc

from edgesplit.core.types import Route
from edgesplit.model.base import WireTensor
from edgesplit.model.errors import BadFrameDtype
from edgesplit.model.wire import to_wire
from edgesplit.rpc.errors import NotFound, Precondition, Unavailable, status_of
from edgesplit.rpc.transport import Transport, TransportSettings
from edgesplit.security.errors import FrameRejected
from edgesplit.security.header import FrameHeader
from edgesplit.v1 import node_agent_pb2 as na
from edgesplit.v1 import node_agent_pb2_grpc as na_grpc
from services.node_agent import metrics as m
from services.node_agent.emulation import Emulator
from services.node_agent.epochs import EpochBook, EpochState

log = logging.getLogger(__name__)
T = TypeVar("T")


class StepFailed(Exception):
    """A ring step could not complete; the entry may replay on another route."""

    def __init__(self, failed_node: str, code: str, detail: str) -> None:
        super().__init__(f"{failed_node}: {code}: {detail}")
        self.failed_node = failed_node
        self.code = code


@dataclass
class _Chunks:
    """Chunks of one large frame until all have arrived."""

    total: int
    parts: dict[int, bytes] = field(default_factory=dict)


class DataPlane:
    def __init__(self, node_id: str, book: EpochBook, emulator: Emulator,
                 rpc_timeout_s: float, chunk_bytes: int, max_message_bytes: int,
                 torch_threads: int = 0, transport: Transport | None = None) -> None:
        self.node_id = node_id
        self.transport = transport or Transport(
            TransportSettings(max_message_bytes=max_message_bytes))
        self.book = book
        self.emulator = emulator
        self.rpc_timeout_s = rpc_timeout_s
        self.chunk_bytes = max(1024, min(chunk_bytes, max_message_bytes - 64 * 1024))
        self.max_message_bytes = max_message_bytes
        # One thread: a node runs one frame at a time, as a device would; the
        # event loop stays free for I/O while torch works.
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="segment",
                                            initializer=_set_threads, initargs=(torch_threads,))
        self._stubs: dict[str, tuple[grpc.aio.Channel, na_grpc.NodeAgentStub]] = {}
        self._pending: dict[tuple[str, int], asyncio.Future[Any]] = {}
        self._chunks: dict[tuple[int, str, int, int], _Chunks] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # hook (services/node_agent/telemetry.py, set when reporting to a monitor):
        # compute_observer(runner, phase, seconds, tokens) after each timed run,
        # frame_observer(dst, nbytes, seconds, ack) after each acked frame chunk,
        # request_observer(ttft_s, step_latencies_s, ok) when a Generate ends.
        self.compute_observer: Callable[[Any, str, float, int], None] | None = None
        self.frame_observer: Callable[[str, int, float, Any], None] | None = None
        self.request_observer: Callable[[float, Sequence[float], bool], None] | None = None
        self.computing = 0  # hook: compute() calls in flight (the report's queue depth)

    # ---- plumbing ------------------------------------------------------------
    async def compute(self, fn: Callable[[], T], phase: str = "decode", *,
                      runner: Any = None, tokens: int = 0) -> T:
        loop = asyncio.get_running_loop()
        start = time.perf_counter()
        self.computing += 1
        try:
            result, busy = await loop.run_in_executor(self._executor, _timed, fn)
        finally:
            self.computing -= 1
        elapsed = time.perf_counter() - start
        wall, cpu = busy
        emulated = self.emulator.compute_seconds(wall, cpu)
        m.COMPUTE.labels(phase).observe(emulated)
        if self.compute_observer is not None and runner is not None:
            # hook: per-layer costs from the time inside the runner only, without
            # the hand-off to and from the compute thread (that is queueing).
            self.compute_observer(runner, phase, emulated, tokens)
        await self.emulator.after_compute(emulated - elapsed)
        return result

    @property
    def queue_depth(self) -> int:
        """Runs waiting behind the one the single compute thread is doing."""
        return max(0, self.computing - 1)

    def stub(self, address: str) -> na_grpc.NodeAgentStub:
        entry = self._stubs.get(address)
        if entry is None:
            channel = self.transport.aio_channel(address)
            entry = (channel, na_grpc.NodeAgentStub(channel))
            self._stubs[address] = entry
        return entry[1]

    def channel(self, address: str) -> grpc.aio.Channel:
        self.stub(address)
        return self._stubs[address][0]

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for channel, _ in self._stubs.values():
            await channel.close()
        self._executor.shutdown(wait=False, cancel_futures=True)

    # ---- receiving -------------------------------------------------------------
    async def receive(self, frame: na.Frame) -> na.FrameAck:
        h = frame.header
        es = self.book.get(h.epoch)
        if es is None:
            raise Precondition(f"epoch {h.epoch} is not held by {self.node_id}")
        try:
            route, plaintext = self._open(es, frame)
        except FrameRejected as exc:
            m.FRAMES_REJECTED.labels(exc.reason).inc()
            raise
        if h.dtype != es.wire_dtype:
            m.FRAMES_REJECTED.labels("bad_dtype").inc()
            raise BadFrameDtype(f"frame dtype {h.dtype}, assignment says {es.wire_dtype}")
        m.FRAMES_RECEIVED.labels(h.src).inc()
        data = self._reassemble(h, plaintext)
        ack = na.FrameAck(session_id=h.session_id, step=h.step)
        if data is None:
            ack.chunks_missing = h.chunks - len(self._chunks[_chunk_key(h)].parts)
            return ack
        try:
            wire = WireTensor(data, tuple(h.shape), h.dtype)
        except Exception:
            m.FRAMES_REJECTED.labels("bad_shape").inc()
            raise
        if h.hop == len(route.segments):  # the ring closed at this entry node
            fut = self._pending.get((h.session_id, h.step))
            if fut is None or fut.done():
                raise NotFound(f"no step {h.step} of session {h.session_id} is waiting")
            fut.set_result(wire)
            return ack
        runner = es.runners[(h.entry, h.hop)]
        try:
            hidden = await self.compute(
                lambda: runner.forward(h.session_id, runner.decode_hidden(wire), h.start_pos),
                "prefill" if h.step == 0 else "decode", runner=runner, tokens=wire.shape[1])
        except Exception as exc:
            if status_of(exc) == grpc.StatusCode.INVALID_ARGUMENT:
                m.FRAMES_REJECTED.labels("bad_shape").inc()
            raise
        self.spawn(self.advance(es, route, h.hop + 1, hidden, h.session_id, h.step,
                                h.start_pos))
        return ack

    def _open(self, es: EpochState, frame: na.Frame) -> tuple[Route, bytes]:
        h = frame.header
        header = FrameHeader(h.session_id, h.step, h.hop, h.epoch, h.src, h.dst,
                             tuple(h.shape), h.dtype, h.chunk, h.chunks, h.entry, h.start_pos)
        route = es.routes.get(h.entry)
        if h.dst != self.node_id or route is None:
            raise FrameRejected("misrouted", f"frame for {h.dst}/{h.entry} at {self.node_id}")
        n = len(route.segments)
        if not 0 < h.hop <= n:
            raise FrameRejected("misrouted", f"hop {h.hop} outside route of {n} segments")
        here = route.entry if h.hop == n else route.segments[h.hop].node
        if here != self.node_id or route.segments[h.hop - 1].node != h.src:
            raise FrameRejected("misrouted", f"hop {h.hop} from {h.src} is not this node's")
        link = es.peers.get(h.src)
        if link is None:
            raise FrameRejected("misrouted", f"{h.src} is not a peer in epoch {h.epoch}")
        return route, link.opener.open(frame.nonce, header, frame.ciphertext)

    def _reassemble(self, h: na.FrameHeader, plaintext: bytes) -> bytes | None:
        if h.chunks <= 1:
            return plaintext
        key = _chunk_key(h)
        buf = self._chunks.setdefault(key, _Chunks(h.chunks))
        if buf.total != h.chunks:
            del self._chunks[key]
            raise FrameRejected("bad_header", "chunk count changed within a frame")
        buf.parts[h.chunk] = plaintext
        if len(buf.parts) < buf.total:
            return None
        del self._chunks[key]
        return b"".join(buf.parts[i] for i in range(buf.total))

    # ---- forwarding --------------------------------------------------------------
    async def advance(self, es: EpochState, route: Route, hop: int, hidden: Any,
                      session: str, step: int, start_pos: int) -> None:
        """Run consecutive local hops, then send to the next node (or close the
        ring locally). Failures are reported to the entry, never swallowed."""
        n = len(route.segments)
        dst = self.node_id
        try:
            while hop < n and route.segments[hop].node == self.node_id:
                runner = es.runners[(route.entry, hop)]
                hidden = await self.compute(
                    lambda r=runner, x=hidden: r.forward(session, x, start_pos),
                    "prefill" if step == 0 else "decode", runner=runner,
                    tokens=int(hidden.shape[1]))
                hop += 1
            dst = route.segments[hop].node if hop < n else route.entry
            if dst == self.node_id:  # single-node ring: deliver without the network
                fut = self._pending.get((session, step))
                if fut is not None and not fut.done():
                    fut.set_result(hidden)
                return
            await self.send(es, dst, route.entry, hop, hidden, session, step, start_pos)
        except Exception as exc:  # noqa: BLE001 - reported to the entry below
            code = status_of(exc) or grpc.StatusCode.UNKNOWN
            if isinstance(exc, grpc.aio.AioRpcError):
                code = exc.code()
            log.warning("step %s/%d failed towards %s: %s", session, step, dst, exc)
            await self.report_failure(es, route.entry, session, step, dst, code.name, str(exc))

    async def send(self, es: EpochState, dst: str, entry: str, hop: int, hidden: Any,
                   session: str, step: int, start_pos: int) -> None:
        link = es.peers.get(dst)
        if link is None:
            raise Precondition(f"{dst} is not a peer of {self.node_id} in epoch {es.epoch}")
        wire = to_wire(hidden, es.wire_dtype)
        data = memoryview(wire.data)
        chunks = max(1, -(-len(data) // self.chunk_bytes))
        stub = self.stub(link.address)
        for i in range(chunks):
            piece = data[i * self.chunk_bytes:(i + 1) * self.chunk_bytes]
            header = FrameHeader(session, step, hop, es.epoch, self.node_id, dst, wire.shape,
                                 wire.dtype, i, chunks, entry, start_pos)
            nonce, ciphertext = link.sealer.seal(header, piece)
            frame = na.Frame(
                header=na.FrameHeader(session_id=session, step=step, hop=hop, epoch=es.epoch,
                                      src=self.node_id, dst=dst, shape=wire.shape,
                                      dtype=wire.dtype, chunk=i, chunks=chunks, entry=entry,
                                      start_pos=start_pos),
                nonce=nonce, ciphertext=ciphertext)
            size = frame.ByteSize()
            sent_at = time.perf_counter()
            await self.emulator.transmit(dst, size)
            ack = await stub.Forward(frame, timeout=self.rpc_timeout_s)
            if self.frame_observer is not None:  # hook: passive link timing
                self.frame_observer(dst, size, time.perf_counter() - sent_at, ack)
            m.FRAMES_SENT.labels(dst).inc()
            m.BYTES_SENT.labels(dst).inc(size)

    async def report_failure(self, es: EpochState, entry: str, session: str, step: int,
                             failed_node: str, code: str, detail: str) -> None:
        failure = StepFailed(failed_node, code, detail)
        if entry == self.node_id:
            self.fail_step(session, step, failure)
            return
        link = es.peers.get(entry)
        address = link.address if link else ""
        for p in es.assignment.peers:
            if p.node_id == entry:
                address = p.address
        if not address:
            return
        try:
            await self.stub(address).Fail(
                na.StepFailure(session_id=session, step=step, epoch=es.epoch,
                               reporter=self.node_id, failed_node=failed_node, code=code,
                               detail=detail[:500]), timeout=self.rpc_timeout_s)
        except grpc.aio.AioRpcError as exc:  # the entry times the step out instead
            log.warning("could not report failure to entry %s: %s", entry, exc.code())

    def fail_step(self, session: str, step: int, failure: Exception) -> bool:
        fut = self._pending.get((session, step))
        if fut is None or fut.done():
            return False
        fut.set_exception(failure)
        return True

    # ---- the entry's side of one step ----------------------------------------------
    async def ring_step(self, es: EpochState, route: Route, session: str, step: int,
                        token_ids: list[int], start_pos: int, timeout_s: float) -> Any:
        """Embed, run hop 0, send around the ring, and wait for the hidden state
        that comes back. Returns it as a tensor for the head."""
        key = (session, step)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[key] = fut
        try:
            runner = es.runners[(route.entry, 0)]
            hidden = await self.compute(
                lambda: runner.forward(session, runner.embed(token_ids), start_pos),
                "prefill" if step == 0 else "decode", runner=runner, tokens=len(token_ids))
            self.spawn(self.advance(es, route, 1, hidden, session, step, start_pos))
            try:
                out = await asyncio.wait_for(fut, timeout_s)
            except TimeoutError as exc:
                raise StepFailed("", "DEADLINE_EXCEEDED",
                                 f"step {step} did not return in {timeout_s}s") from exc
            return out
        finally:
            self._pending.pop(key, None)

    def head_runner(self, es: EpochState, route: Route) -> Any:
        for hop, seg in enumerate(route.segments):
            if seg.has_head and seg.node == self.node_id:
                return es.runners[(route.entry, hop)]
        raise Unavailable(f"route of {route.entry} has no head on this node")


def _chunk_key(h: na.FrameHeader) -> tuple[int, str, int, int]:
    return (h.epoch, h.session_id, h.step, h.hop)


def _timed(fn: Callable[[], T]) -> tuple[T, tuple[float, float]]:
    """Run ``fn`` on the compute thread: its result, and the wall and CPU
    seconds it took there (CPU time is what an emulated slower device scales:
    it does not grow when other processes share the cores)."""
    start, cpu = time.perf_counter(), time.thread_time()
    result = fn()
    return result, (time.perf_counter() - start, time.thread_time() - cpu)


def _set_threads(n: int) -> None:
    if n > 0:
        import torch

        torch.set_num_threads(n)
