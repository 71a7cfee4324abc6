"""Activation frames: seal into chunks, open and check, reassemble; batched
frames (several sessions' steps at one hop, sealed once).

No torch here: a frame's payload is the :class:`WireTensor` a runner's codec
made. The header is :class:`edgesplit.security.header.FrameHeader`; the wire
message is built from it by field name.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from edgesplit.core.types import Route
from edgesplit.model.base import WIRE_DTYPES, WireTensor
from edgesplit.model.errors import BadFrameShape
from edgesplit.security.channel import TAG_LEN
from edgesplit.security.errors import FrameRejected
from edgesplit.security.header import BatchHeader, FrameHeader
from edgesplit.v1 import node_agent_pb2 as na
from services.node_agent.epochs import EpochState, PeerLink


def seal(es: EpochState, header: FrameHeader, wire: WireTensor,
         chunk_bytes: int) -> list[na.Frame]:
    """The frame (one chunk or several) carrying ``wire`` under ``header``;
    ``header.shape``/``dtype``/``chunk``/``chunks`` are filled in here."""
    link = es.peers[header.dst]
    data = memoryview(wire.data)
    chunks = max(1, -(-len(data) // chunk_bytes))
    frames = []
    for i in range(chunks):
        h = replace(header, shape=wire.shape, dtype=wire.dtype, chunk=i, chunks=chunks)
        nonce, ciphertext = link.sealer.seal(h, data[i * chunk_bytes:(i + 1) * chunk_bytes])
        frames.append(na.Frame(header=na.FrameHeader(**h.as_dict()), nonce=nonce,
                               ciphertext=ciphertext))
    return frames


def open_frame(es: EpochState, node_id: str, frame: na.Frame, chunks: Reassembly
               ) -> tuple[Route, FrameHeader, bytearray | None]:
    """Check the frame is for this node at this hop from the hop before, and
    open it (AEAD: tampered and replayed frames fail here) straight into the
    buffer of its payload. The payload once complete, else None (more chunks)."""
    header = FrameHeader.from_proto(frame.header)
    route, link = _route_and_link(es, node_id, header)
    ciphertext = frame.ciphertext
    size = max(len(ciphertext) - TAG_LEN, 0)
    if header.chunks <= 1:
        payload = bytearray(size)
        link.opener.open_into(frame.nonce, header, ciphertext, payload)
        return route, header, payload
    slot = chunks.slot(header, size)
    try:
        link.opener.open_into(frame.nonce, header, ciphertext, slot)
    except FrameRejected:
        chunks.drop_unopened(header)  # a forged first chunk holds no buffer
        raise
    return route, header, chunks.arrived(header)


def _route_and_link(es: EpochState, node_id: str, header: FrameHeader) -> tuple[Route, PeerLink]:
    """The route and link of a frame for this node at its hop from the hop before."""
    route = es.routes.get(header.entry)
    if header.dst != node_id or route is None:
        raise FrameRejected("misrouted", f"frame for {header.dst}/{header.entry} at {node_id}")
    n = len(route.segments)
    if not 0 < header.hop < n:
        raise FrameRejected("misrouted", f"hop {header.hop} outside route of {n} segments")
    if route.segments[header.hop].node != node_id \
            or route.segments[header.hop - 1].node != header.src:
        raise FrameRejected("misrouted", f"hop {header.hop} from {header.src} is not this node's")
    link = es.peers.get(header.src)
    if link is None:
        raise FrameRejected("misrouted", f"{header.src} is not a peer in epoch {header.epoch}")
    return route, link


@dataclass
class _Parts:
    total: int
    data: bytearray
    started: float
    seen: set[int] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class ReassemblyLimits:
    """What half-received chunked frames may hold: a sender that starts frames
    and never finishes them gets RESOURCE_EXHAUSTED, and its buffers expire."""

    max_frames: int = 64
    max_bytes: int = 1 << 30  # one prefill frame of a long prompt must still fit
    ttl_s: float = 60.0


class Reassembly:
    """Large frames, written chunk by chunk into one buffer as they open."""

    def __init__(self, limits: ReassemblyLimits | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits or ReassemblyLimits()
        self._clock = clock
        self._open: dict[tuple[int, str, int, int], _Parts] = {}
        self.held_bytes = 0

    def __len__(self) -> int:
        return len(self._open)

    def _expire(self) -> None:
        old = self._clock() - self.limits.ttl_s
        for key in [k for k, b in self._open.items() if b.started < old]:
            self._drop(key)

    def _drop(self, key: tuple[int, str, int, int]) -> None:
        buf = self._open.pop(key, None)
        if buf is not None:
            self.held_bytes -= len(buf.data)

    def _start(self, key: tuple[int, str, int, int], h: FrameHeader) -> _Parts:
        self._expire()
        nbytes = math.prod(h.shape) * WIRE_DTYPES.get(h.dtype, 0)
        if not nbytes:
            raise BadFrameShape(f"frame shape {h.shape} {h.dtype} holds nothing")
        if len(self._open) >= self.limits.max_frames \
                or self.held_bytes + nbytes > self.limits.max_bytes:
            raise FrameRejected("chunk_limit", f"{len(self._open)} chunked frames of "
                                f"{self.held_bytes} bytes open; {nbytes} more refused")
        buf = self._open[key] = _Parts(h.chunks, bytearray(nbytes), self._clock())
        self.held_bytes += nbytes
        return buf

    def drop_unopened(self, h: FrameHeader) -> None:
        """Forget a frame whose first chunk did not open (nothing of it is real)."""
        key = (h.epoch, h.session_id, h.step, h.hop)
        buf = self._open.get(key)
        if buf is not None and not buf.seen:
            self._drop(key)

    def slot(self, h: FrameHeader, size: int) -> memoryview:
        """Where chunk ``h.chunk`` (``size`` plaintext bytes) of its frame goes.
        Chunks before the last are all the same size; the last ends the buffer."""
        key = (h.epoch, h.session_id, h.step, h.hop)
        buf = self._open.get(key) or self._start(key, h)
        if buf.total != h.chunks:
            self._drop(key)
            raise FrameRejected("bad_header", "chunk count changed within a frame")
        last = h.chunk == h.chunks - 1
        offset = len(buf.data) - size if last else h.chunk * size
        if offset < 0 or offset + size > len(buf.data) or (not last and size == 0):
            self._drop(key)
            raise FrameRejected("bad_header", f"chunk {h.chunk} does not fit its frame")
        return memoryview(buf.data)[offset:offset + size]

    def arrived(self, h: FrameHeader) -> bytearray | None:
        """Chunk ``h.chunk`` opened: the whole payload once all have."""
        key = (h.epoch, h.session_id, h.step, h.hop)
        buf = self._open[key]
        buf.seen.add(h.chunk)
        if len(buf.seen) < buf.total:
            return None
        self._drop(key)
        return buf.data

    def forget(self, session_id: str) -> None:
        for key in [k for k in self._open if k[1] == session_id]:
            self._drop(key)


def seal_batch(es: EpochState, headers: list[FrameHeader], wire: WireTensor) -> na.BatchFrame:
    """One message for the steps of several sessions: ``wire`` holds their rows
    back to back, in header order, sealed once under all their headers."""
    batch = BatchHeader(tuple(headers))
    nonce, ciphertext = es.peers[batch.dst].sealer.seal(batch, memoryview(wire.data))
    return na.BatchFrame(headers=[na.FrameHeader(**h.as_dict()) for h in headers],
                         nonce=nonce, ciphertext=ciphertext)


def open_batch(es: EpochState, node_id: str, frame: na.BatchFrame
               ) -> tuple[Route, BatchHeader, bytearray]:
    """Check and open a batched frame (the checks of :func:`open_frame`, made
    once for the link and hop all its headers share); its payload."""
    batch = BatchHeader(tuple(FrameHeader.from_proto(h) for h in frame.headers))
    route, link = _route_and_link(es, node_id, batch.headers[0])
    size = max(len(frame.ciphertext) - TAG_LEN, 0)
    want = sum(math.prod(h.shape) * WIRE_DTYPES.get(h.dtype, 0) for h in batch.headers)
    if size != want:
        raise BadFrameShape(f"batch payload has {size} bytes, its headers need {want}")
    payload = bytearray(size)
    link.opener.open_into(frame.nonce, batch, frame.ciphertext, payload)
    return route, batch, payload
