"""The frame header and its canonical encoding (the AEAD's associated data).

Canonical means one header has exactly one byte string and two different
headers never share one: fixed field order, fixed-width big-endian integers,
length-prefixed UTF-8 strings, a domain prefix. JSON would not do (key order,
number formats, escapes all vary).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, fields
from typing import Any, Final

from edgesplit.security.errors import FrameRejected

__all__ = ["BatchHeader", "FrameHeader", "length_prefixed"]

_MAX_STR: Final = 255  # ids and dtype names are short; bounds what a peer can make us hash
_MAX_DIMS: Final = 8
_U64: Final = 1 << 64
_FRAME_DOMAIN: Final = b"edgesplit.v1.frame\0"


def length_prefixed(s: str) -> bytes:
    b = s.encode("utf-8")
    return len(b).to_bytes(1, "big") + b  # length prefix: "ab"+"c" != "a"+"bc"


@dataclass(frozen=True, slots=True)
class FrameHeader:
    """What a frame claims about itself; authenticated (not encrypted) with it."""

    session_id: str
    step: int
    hop: int
    epoch: int
    src: str
    dst: str
    shape: tuple[int, ...]
    dtype: str
    chunk: int = 0
    chunks: int = 1
    # Route id (its entry node) and first token position: bound too, so a
    # frame cannot be moved to another route or shifted in the KV cache.
    entry: str = ""
    start_pos: int = 0

    def __post_init__(self) -> None:
        # Rejected here, on construction, so a malformed header off the wire
        # becomes bad_header rather than an encoding error deep in open().
        for name in ("session_id", "src", "dst", "dtype"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value or len(value.encode("utf-8")) > _MAX_STR:
                raise FrameRejected("bad_header", f"{name} must be 1..{_MAX_STR} UTF-8 bytes")
        if not isinstance(self.entry, str) or len(self.entry.encode("utf-8")) > _MAX_STR:
            raise FrameRejected("bad_header", f"entry must be <= {_MAX_STR} UTF-8 bytes")
        for name in ("step", "hop", "epoch", "chunk", "chunks", "start_pos"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value < _U64:
                raise FrameRejected("bad_header", f"{name} must be an unsigned 64-bit int")
        if not self.chunk < self.chunks:
            raise FrameRejected("bad_header", f"chunk {self.chunk} not below chunks {self.chunks}")
        if len(self.shape) > _MAX_DIMS or not all(
            isinstance(d, int) and 0 <= d < _U64 for d in self.shape
        ):
            raise FrameRejected("bad_header", f"shape must be <= {_MAX_DIMS} unsigned dims")

    @classmethod
    def from_proto(cls, msg: Any) -> FrameHeader:
        """From the wire message (``edgesplit.v1.FrameHeader``), whose fields are
        this class's, by name: the header is spelled out once, here."""
        values = {name: getattr(msg, name) for name in FIELDS}
        values["shape"] = tuple(values["shape"])
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        """Keyword arguments for the wire message: ``FrameHeader(**h.as_dict())``."""
        return {name: getattr(self, name) for name in FIELDS}

    def encode(self) -> bytes:
        """Canonical bytes: fixed field order, fixed-width ints, length-prefixed strings."""
        return b"".join(
            (
                _FRAME_DOMAIN,
                length_prefixed(self.session_id),
                length_prefixed(self.src),
                length_prefixed(self.dst),
                length_prefixed(self.dtype),
                length_prefixed(self.entry),
                struct.pack(
                    f">6QB{len(self.shape)}Q",
                    self.step,
                    self.hop,
                    self.epoch,
                    self.chunk,
                    self.chunks,
                    self.start_pos,
                    len(self.shape),
                    *self.shape,
                ),
            )
        )


FIELDS: Final = tuple(f.name for f in fields(FrameHeader))


_BATCH_DOMAIN: Final = b"edgesplit.v1.batch\0"
# Link fields every header of a batch shares: the link's checks read them once.
_SHARED: Final = ("epoch", "src", "dst", "entry", "hop", "dtype")


@dataclass(frozen=True, slots=True)
class BatchHeader:
    """The headers of a batched frame, authenticated together: every session's
    header (its id, step, position and shape) is bound into the one seal, so no
    session's part can be moved, reordered or dropped without the frame failing
    to open."""

    headers: tuple[FrameHeader, ...]

    def __post_init__(self) -> None:
        if not self.headers:
            raise FrameRejected("bad_header", "a batch frame needs at least one header")
        first = self.headers[0]
        for h in self.headers:
            if h.chunks != 1 or any(getattr(h, f) != getattr(first, f) for f in _SHARED):
                raise FrameRejected("bad_header", "batch headers must share one link and hop "
                                                  "and be unchunked")
        if len({h.session_id for h in self.headers}) != len(self.headers):
            raise FrameRejected("bad_header", "a session appears twice in one batch frame")

    @property
    def src(self) -> str:
        return self.headers[0].src

    @property
    def dst(self) -> str:
        return self.headers[0].dst

    @property
    def epoch(self) -> int:
        return self.headers[0].epoch

    def encode(self) -> bytes:
        """Canonical bytes: a domain, the count, then each header's own encoding
        length-prefixed (a batch never encodes as any single frame's header)."""
        parts = [_BATCH_DOMAIN, struct.pack(">I", len(self.headers))]
        for h in self.headers:
            raw = h.encode()
            parts += (struct.pack(">I", len(raw)), raw)
        return b"".join(parts)
