"""``FakeSegmentRunner``: the runner interface in pure Python, for control-plane tests.

No torch import. The arithmetic is a toy but keeps what the agent's logic must
respect: each layer's output depends on the session's cached history (so a
mixed-up session, a skipped step or a bad replay changes the tokens), the same
inputs give the same tokens, and the same session rules and errors apply as in
``TorchSegmentRunner``. Chained fakes over ``[0, L)`` give the same tokens
however the layers are cut.
"""

from __future__ import annotations

import random
import struct
import time
from array import array
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import accumulate

from edgesplit.model.base import SamplingParams, SegmentSpec, SessionTable, WireTensor
from edgesplit.model.errors import BadFrame, BadFrameDtype, BadFrameShape, BadTokens, NotServed

_FMT = {"float32": "f", "float16": "e"}


def _f32(values: Iterable[float]) -> tuple[float, ...]:
    # Round to float32 so that a float32 wire round trip is exact, as with torch.
    return tuple(array("f", values))


@dataclass(frozen=True, slots=True)
class FakeHidden:
    """``rows[t][k]``: a ``[1, T, hidden]`` activation as nested lists."""

    rows: tuple[tuple[float, ...], ...]
    dtype: str = "float32"

    @property
    def shape(self) -> tuple[int, int, int]:
        return (1, len(self.rows), len(self.rows[0]) if self.rows else 0)


@dataclass(slots=True)
class _FakeCache:
    # Per layer, a running sum over cached positions of each position's mean value.
    sums: list[list[float]] = field(default_factory=list)

    def nbytes(self) -> int:
        return 8 * sum(len(s) for s in self.sums)


class FakeSampler:
    def __init__(self, params: SamplingParams) -> None:
        self.params = params
        self._rng = random.Random(params.seed)

    def choose(self, logits: list[float]) -> int:
        if self.params.temperature == 0.0:
            return max(range(len(logits)), key=lambda i: (logits[i], -i))  # first max, like argmax
        return self._rng.choices(
            range(len(logits)), weights=[2.0 ** (v / self.params.temperature) for v in logits]
        )[0]

    def is_stop(self, token: int) -> bool:
        return token in self.params.stop_token_ids


class FakeSegmentRunner:
    def __init__(
        self,
        start: int,
        end: int,
        has_embed: bool = False,
        has_head: bool = False,
        hidden_size: int = 8,
        vocab_size: int = 64,
        max_length: int = 2048,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._spec = SegmentSpec(start, end, has_embed, has_head)
        self._hidden = hidden_size
        self.vocab_size = vocab_size
        self.max_length = max_length
        self._sessions: SessionTable[_FakeCache] = SessionTable(max_length, clock)
        self.calls = 0  # forward calls, for tests that count work

    @property
    def spec(self) -> SegmentSpec:
        return self._spec

    @property
    def hidden_size(self) -> int:
        return self._hidden

    def embed(self, token_ids: Sequence[int]) -> FakeHidden:
        if not self._spec.has_embed:
            raise NotServed("this segment does not hold the embedding")
        ids = list(token_ids)
        if not ids or any(not isinstance(t, int) or not 0 <= t < self.vocab_size for t in ids):
            raise BadTokens(f"token ids must be non-empty ints in [0, {self.vocab_size})")
        h = self._hidden
        return FakeHidden(
            tuple(_f32(((t * 31 + k * 7) % 97) / 97.0 for k in range(h)) for t in ids)
        )

    def _check(self, hidden: object) -> FakeHidden:
        if not isinstance(hidden, FakeHidden):
            raise BadFrame(f"hidden must be FakeHidden, got {type(hidden).__name__}")
        _, n, h = hidden.shape
        if n < 1 or h != self._hidden or any(len(r) != h for r in hidden.rows):
            raise BadFrameShape(f"hidden shape {hidden.shape}, expected [1, T, {self._hidden}]")
        if hidden.dtype != "float32":
            raise BadFrameDtype(f"hidden dtype {hidden.dtype}, runner runs float32")
        return hidden

    def forward(self, session_id: str, hidden: FakeHidden, start_pos: int) -> FakeHidden:
        x = self._check(hidden)
        if not isinstance(start_pos, int) or start_pos < 0:
            raise BadFrame(f"start_pos must be an int >= 0, got {start_pos!r}")
        n = len(x.rows)
        cache = self._sessions.check_step(session_id, start_pos, n)
        if cache is None:
            cache = _FakeCache([[] for _ in range(self._spec.num_layers)])
        rows = [list(r) for r in x.rows]
        new_sums = [list(s) for s in cache.sums]  # copy-on-write keeps a failed step harmless
        for li, layer in enumerate(range(self._spec.start, self._spec.end)):
            sums = new_sums[li]
            for t, row in enumerate(rows):
                history = sums[-1] if sums else 0.0
                mean = sum(row) / len(row)
                sums.append(history + mean)
                shift = 0.01 * (layer + 1) + 0.001 * ((history * 7 + start_pos + t) % 13)
                row[:] = [(v + shift) % 1.0 for v in row]
        self.calls += 1
        cache.sums = new_sums
        self._sessions.commit(session_id, cache, start_pos + n)
        return FakeHidden(tuple(_f32(r) for r in rows))

    def forward_batch(self, steps: Sequence[tuple[str, FakeHidden, int]]) -> list[FakeHidden]:
        if not steps or len({sid for sid, _, _ in steps}) != len(steps):
            raise BadFrame("a batch needs at least one step and each session once")
        for sid, x, pos in steps:  # all checked before any cache changes
            self._sessions.check_step(sid, pos, self._check(x).shape[1])
        return [self.forward(sid, x, pos) for sid, x, pos in steps]

    def head_batch(self, hiddens: Sequence[FakeHidden]) -> list[list[float]]:
        return [self.head(h) for h in hiddens]

    def encode_batch(self, hiddens: Sequence[FakeHidden],
                     wire_dtype: str = "float32") -> WireTensor:
        rows = tuple(r for h in hiddens for r in self._check(h).rows)
        return self.encode_hidden(FakeHidden(rows), wire_dtype)

    def decode_batch(self, wire: WireTensor, lengths: Sequence[int]) -> list[FakeHidden]:
        whole = self.decode_hidden(wire)
        if sum(lengths) != whole.shape[1]:
            raise BadFrameShape(f"rows {list(lengths)} do not add up to {whole.shape[1]}")
        ends = list(accumulate(lengths))
        return [self.slice_hidden(whole, e - n, e) for n, e in zip(lengths, ends, strict=True)]

    def slice_hidden(self, hidden: FakeHidden, start: int, end: int) -> FakeHidden:
        return FakeHidden(hidden.rows[start:end], hidden.dtype)

    def kv_bytes_per_token(self) -> int:
        return 8 * self._spec.num_layers

    def head(self, hidden: FakeHidden) -> list[float]:
        if not self._spec.has_head:
            raise NotServed("this segment does not hold the head")
        last = self._check(hidden).rows[-1]
        centre = int(sum(last) * 1000) % self.vocab_size
        return [-float(abs(centre - v)) for v in range(self.vocab_size)]

    def new_sampler(self, params: SamplingParams) -> FakeSampler:
        return FakeSampler(params)

    def encode_hidden(self, hidden: FakeHidden, wire_dtype: str = "float32") -> WireTensor:
        flat = [v for r in self._check(hidden).rows for v in r]
        if wire_dtype == "bfloat16":  # the top half of each float32
            raw = struct.pack(f"<{len(flat)}f", *flat)
            data = b"".join(raw[i + 2 : i + 4] for i in range(0, len(raw), 4))
        elif wire_dtype in _FMT:
            data = struct.pack(f"<{len(flat)}{_FMT[wire_dtype]}", *flat)
        else:
            raise BadFrameDtype(f"wire dtype {wire_dtype!r}")
        return WireTensor(data, hidden.shape, wire_dtype)

    def decode_hidden(self, wire: WireTensor) -> FakeHidden:
        if len(wire.shape) != 3 or wire.shape[0] != 1 or wire.shape[2] != self._hidden:
            raise BadFrameShape(f"frame shape {wire.shape}, expected (1, T, {self._hidden})")
        n = wire.shape[1] * wire.shape[2]
        if wire.dtype == "bfloat16":
            data = b"".join(b"\0\0" + wire.data[i : i + 2] for i in range(0, len(wire.data), 2))
            flat = struct.unpack(f"<{n}f", data)
        else:
            flat = struct.unpack(f"<{n}{_FMT[wire.dtype]}", wire.data)
        h = self._hidden
        return FakeHidden(tuple(tuple(flat[i : i + h]) for i in range(0, n, h)))

    def session_length(self, session_id: str) -> int | None:
        return self._sessions.length(session_id)

    def truncate(self, session_id: str, length: int) -> None:
        self._sessions.set_length(session_id, length)
        cache = self._sessions.state(session_id)
        cache.sums = [s[:length] for s in cache.sums]

    def end_session(self, session_id: str) -> bool:
        return self._sessions.pop(session_id) is not None

    def evict_idle(self, now: float, idle_timeout_s: float) -> list[str]:
        idle = self._sessions.idle(now, idle_timeout_s)
        for sid in idle:
            self._sessions.pop(sid)
        return idle

    def kv_bytes(self) -> int:
        return sum(c.nbytes() for c in self._sessions.states())

    def session_count(self) -> int:
        return len(self._sessions)
