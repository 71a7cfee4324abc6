"""Activation frames: seal into chunks, open and check, reassemble.

No torch here: a frame's payload is the :class:`WireTensor` a runner's codec
made. The header is :class:`edgesplit.security.header.FrameHeader`; the wire
message is built from it by field name.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from edgesplit.core.types import Route
from edgesplit.model.base import WireTensor
from edgesplit.security.errors import FrameRejected
from edgesplit.security.header import FrameHeader
from edgesplit.v1 import node_agent_pb2 as na
from services.node_agent.epochs import EpochState


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


def open_frame(es: EpochState, node_id: str, frame: na.Frame
               ) -> tuple[Route, FrameHeader, bytes]:
    """Check the frame is for this node at this hop from the hop before, and
    open it (AEAD: tampered and replayed frames fail here)."""
    header = FrameHeader.from_proto(frame.header)
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
    return route, header, link.opener.open(frame.nonce, header, frame.ciphertext)


@dataclass
class _Parts:
    total: int
    parts: dict[int, bytes] = field(default_factory=dict)


class Reassembly:
    """Chunks of large frames until all have arrived."""

    def __init__(self) -> None:
        self._open: dict[tuple[int, str, int, int], _Parts] = {}

    def add(self, h: FrameHeader, plaintext: bytes) -> bytes | None:
        """The whole payload once its last chunk is in, else None."""
        if h.chunks <= 1:
            return plaintext
        key = (h.epoch, h.session_id, h.step, h.hop)
        buf = self._open.setdefault(key, _Parts(h.chunks))
        if buf.total != h.chunks:
            del self._open[key]
            raise FrameRejected("bad_header", "chunk count changed within a frame")
        buf.parts[h.chunk] = plaintext
        if len(buf.parts) < buf.total:
            return None
        del self._open[key]
        return b"".join(buf.parts[i] for i in range(buf.total))

    def forget(self, session_id: str) -> None:
        for key in [k for k in self._open if k[1] == session_id]:
            del self._open[key]
