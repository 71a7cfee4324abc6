"""The segment-runner interface and the plain values around it.

Nothing here imports torch, so the node agent's control flow, the fake runner
and the control-plane tests can use it without loading a model (docs/architecture.md §10.5).
The hidden-state type is opaque to callers: a runner turns it to and from a
``WireTensor`` (bytes + shape + dtype name) for the network.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from edgesplit.core.types import Part, shard_name
from edgesplit.model.errors import (
    BadFrameDtype,
    BadFrameShape,
    ContextTooLong,
    PositionMismatch,
    SessionNotFound,
)

# Bytes per element of every dtype a frame may carry on the wire.
WIRE_DTYPES: dict[str, int] = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass(frozen=True, slots=True)
class SegmentSpec:
    """Decoder layers ``[start, end)`` plus, optionally, the two pseudo-layers."""

    start: int
    end: int
    has_embed: bool = False
    has_head: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.start <= self.end:
            raise ValueError(f"bad layer range [{self.start}, {self.end})")

    @property
    def num_layers(self) -> int:
        return self.end - self.start

    @property
    def named_parts(self) -> frozenset[Part]:
        """``has_embed`` / ``has_head`` as the core's ``Part`` set."""
        return frozenset(p for p, on in ((Part.EMBED, self.has_embed),
                                         (Part.HEAD, self.has_head)) if on)

    def parts(self) -> tuple[str, ...]:
        """Shard names this segment needs, in manifest naming."""
        keys = sorted((*self.named_parts, *range(self.start, self.end)))
        return tuple(shard_name(k) for k in keys)


@dataclass(frozen=True, slots=True)
class WireTensor:
    """A tensor as it crosses the network: little-endian raw bytes, shape, dtype.

    Validated on construction so that a malformed frame is rejected before any
    runner (or torch) sees it. ``data`` may be any bytes-like buffer: a runner's
    encoder hands out a view of the tensor's memory, an opened frame its
    (writable) payload, so neither side copies for the other.
    """

    data: bytes | bytearray | memoryview
    shape: tuple[int, ...]
    dtype: str

    def __post_init__(self) -> None:
        if self.dtype not in WIRE_DTYPES:
            raise BadFrameDtype(f"wire dtype {self.dtype!r} not in {sorted(WIRE_DTYPES)}")
        if any(not isinstance(d, int) or d < 0 for d in self.shape):
            raise BadFrameShape(f"bad shape {self.shape!r}")
        want = math.prod(self.shape) * WIRE_DTYPES[self.dtype]
        have = memoryview(self.data).nbytes
        if have != want:
            raise BadFrameShape(
                f"payload has {have} bytes, shape {self.shape} {self.dtype} needs {want}"
            )


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """How the entry node picks the next token. ``temperature == 0`` is greedy."""

    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    stop_token_ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.temperature < 0 or not math.isfinite(self.temperature):
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")


class TokenSampler(Protocol):
    """Per-request sampler: holds its own seeded random state."""

    def choose(self, logits: Any) -> int: ...

    def is_stop(self, token: int) -> bool: ...


H = TypeVar("H")


class SegmentRunner(Protocol[H]):
    """What a node agent needs from one loaded segment, and nothing more.

    ``forward`` keeps one KV cache per session for this segment's layers. A step
    must start where the session's cache ends (``start_pos == cached length``);
    ``start_pos == 0`` on an unknown session opens it. Validation happens before
    the cache is touched, and a failed step leaves the cache as it was.

    ``encode_hidden`` / ``decode_hidden`` are the only codec between the
    runner's hidden type ``H`` and the bytes of a frame, so the data plane
    moves frames without knowing (or importing) the tensor library.
    """

    @property
    def spec(self) -> SegmentSpec: ...

    @property
    def hidden_size(self) -> int: ...

    # Entry checks on a request: token ids below vocab_size, prompt plus new
    # tokens within max_length.
    vocab_size: int
    max_length: int

    def embed(self, token_ids: Sequence[int]) -> H: ...

    def forward(self, session_id: str, hidden: H, start_pos: int) -> H: ...

    # Continuous batching (docs/data-plane.md): the steps of several sessions
    # in one forward, all checked before any cache changes; a batch of one is
    # ``forward`` exactly. The batch codecs pack rows back to back, one tensor.
    def forward_batch(self, steps: Sequence[tuple[str, H, int]]) -> list[H]: ...

    def head(self, hidden: H) -> Any: ...

    def head_batch(self, hiddens: Sequence[H]) -> list[Any]: ...

    def encode_batch(self, hiddens: Sequence[H], wire_dtype: str = "float32") -> WireTensor: ...

    def decode_batch(self, wire: WireTensor, lengths: Sequence[int]) -> list[H]: ...

    def slice_hidden(self, hidden: H, start: int, end: int) -> H: ...

    def kv_bytes_per_token(self) -> int: ...

    def new_sampler(self, params: SamplingParams) -> TokenSampler: ...

    def encode_hidden(self, hidden: H, wire_dtype: str = "float32") -> WireTensor: ...

    def decode_hidden(self, wire: WireTensor) -> H: ...

    def session_length(self, session_id: str) -> int | None: ...

    def end_session(self, session_id: str) -> bool: ...

    def evict_idle(self, now: float, idle_timeout_s: float) -> list[str]: ...

    def kv_bytes(self) -> int: ...

    def session_count(self) -> int: ...


S = TypeVar("S")


@dataclass(slots=True)
class _Entry(Generic[S]):
    state: S
    length: int
    last_used: float


@dataclass(slots=True)
class SessionTable(Generic[S]):
    """Session bookkeeping shared by the real and the fake runner.

    ``state`` is the runner's per-session cache object; the table only knows its
    length (tokens cached) and when it was last used (from the injected clock).
    """

    max_length: int
    clock: Callable[[], float]
    _entries: dict[str, _Entry[S]] = field(default_factory=dict)

    def check_step(self, session_id: str, start_pos: int, n_new: int) -> S | None:
        """Validate a step; return the session's state, or None for a new session."""
        entry = self._entries.get(session_id)
        if entry is None:
            if start_pos != 0:
                raise SessionNotFound(session_id)
        elif entry.length != start_pos:
            raise PositionMismatch(session_id, entry.length, start_pos)
        if start_pos + n_new > self.max_length:
            raise ContextTooLong(
                f"session {session_id!r}: {start_pos + n_new} tokens > {self.max_length}"
            )
        return None if entry is None else entry.state

    def commit(self, session_id: str, state: S, length: int) -> None:
        self._entries[session_id] = _Entry(state, length, self.clock())

    def length(self, session_id: str) -> int | None:
        entry = self._entries.get(session_id)
        return None if entry is None else entry.length

    def state(self, session_id: str) -> S:
        entry = self._entries.get(session_id)
        if entry is None:
            raise SessionNotFound(session_id)
        return entry.state

    def set_length(self, session_id: str, length: int) -> None:
        entry = self._entries.get(session_id)
        if entry is None:
            raise SessionNotFound(session_id)
        if not 0 <= length <= entry.length:
            raise PositionMismatch(session_id, entry.length, length)
        entry.length = length
        entry.last_used = self.clock()

    def pop(self, session_id: str) -> S | None:
        entry = self._entries.pop(session_id, None)
        return None if entry is None else entry.state

    def idle(self, now: float, idle_timeout_s: float) -> list[str]:
        return sorted(k for k, e in self._entries.items() if now - e.last_used > idle_timeout_s)

    def states(self) -> Iterator[S]:
        return (e.state for e in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)
