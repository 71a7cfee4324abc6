"""TorchSegmentRunner: session rules, typed errors, and that failures leave the cache intact."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from edgesplit.model import pipeline
from edgesplit.model.errors import (
    BadFrame,
    BadFrameDtype,
    BadFrameShape,
    BadTokens,
    ContextTooLong,
    ModelError,
    NotServed,
    PositionMismatch,
    SessionNotFound,
)
from edgesplit.model.runner import TorchSegmentRunner, chain_runners

PROMPT = [5, 17, 42, 99, 3, 250, 7]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def model_dir(tiny_model: Callable[..., Path]) -> Path:
    return tiny_model("qwen3")


def test_forward_shapes_and_session_length(model_dir: Path) -> None:
    entry = TorchSegmentRunner(model_dir, 0, 2, has_embed=True)
    h = entry.embed(PROMPT)
    assert h.shape == (1, len(PROMPT), entry.hidden_size) and h.dtype == torch.float32
    out = entry.forward("s", h, 0)
    assert out.shape == h.shape
    assert entry.session_length("s") == len(PROMPT)
    step = entry.forward("s", entry.embed([8]), len(PROMPT))
    assert step.shape == (1, 1, entry.hidden_size)
    assert entry.session_length("s") == len(PROMPT) + 1
    assert entry.session_count() == 1 and entry.kv_bytes() > 0
    assert entry.end_session("s") and not entry.end_session("s")
    assert entry.session_count() == 0 and entry.kv_bytes() == 0


def _cache_snapshot(runner: TorchSegmentRunner, sid: str) -> list[torch.Tensor]:
    cache = runner._sessions.state(sid)
    n = cache.length
    return [t[:, :, :n].clone() for t in (*cache._keys, *cache._values) if t is not None]


def test_bad_frames_rejected_and_cache_untouched(model_dir: Path) -> None:
    runners = chain_runners(model_dir, [0, 2, 4])
    first, last, _head = runners
    logits = pipeline.step(runners, "s", PROMPT, 0)
    tok = int(torch.argmax(logits))
    before = _cache_snapshot(last, "s")
    h = first.forward("s", first.embed([tok]), len(PROMPT))  # first is now one step ahead

    with pytest.raises(PositionMismatch) as info:
        last.forward("s", h, len(PROMPT) + 1)
    assert info.value.cached == len(PROMPT)
    with pytest.raises(PositionMismatch):
        last.forward("s", h, 0)  # a restart must end_session / truncate first
    with pytest.raises(BadFrameShape):
        last.forward("s", torch.zeros(1, 1, last.hidden_size + 1), len(PROMPT))
    with pytest.raises(BadFrameShape):
        last.forward("s", torch.zeros(2, 1, last.hidden_size), len(PROMPT))
    with pytest.raises(BadFrameShape):
        last.forward("s", torch.zeros(1, 0, last.hidden_size), len(PROMPT))
    with pytest.raises(BadFrameDtype):
        last.forward("s", h.to(torch.bfloat16), len(PROMPT))
    with pytest.raises(BadFrame):
        last.forward("s", h.tolist(), len(PROMPT))  # type: ignore[arg-type]
    with pytest.raises(BadFrame):
        last.forward("s", h, -1)

    assert last.session_length("s") == len(PROMPT)
    for a, b in zip(before, _cache_snapshot(last, "s"), strict=True):
        assert torch.equal(a, b)
    # The session carries on as if nothing happened.
    last.forward("s", h, len(PROMPT))
    assert last.session_length("s") == len(PROMPT) + 1


def test_failure_inside_a_layer_leaves_cache_length(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = TorchSegmentRunner(model_dir, 0, 4, has_embed=True, has_head=True)
    h = runner.embed(PROMPT)
    ok = runner.forward("s", h, 0)
    boom = runner._layers[2]

    def fail(*args: object, **kwargs: object) -> None:
        raise RuntimeError("out of memory")

    monkeypatch.setattr(boom, "forward", fail)
    step = runner.embed([9])
    with pytest.raises(RuntimeError):
        runner.forward("s", step, len(PROMPT))
    with pytest.raises(RuntimeError):
        runner.forward("new", h, 0)
    assert runner.session_length("s") == len(PROMPT)
    assert runner.session_length("new") is None  # a failed prefill opens nothing
    monkeypatch.undo()
    got = runner.head(runner.forward("s", step, len(PROMPT)))
    fresh = TorchSegmentRunner(model_dir, 0, 4, has_embed=True, has_head=True)
    fresh.forward("s", h, 0)
    assert torch.equal(ok, fresh.forward("t", h, 0))
    assert torch.equal(got, fresh.head(fresh.forward("s", step, len(PROMPT))))


def test_unknown_session_on_decode_is_not_found(model_dir: Path) -> None:
    runner = TorchSegmentRunner(model_dir, 2, 4)
    h = torch.zeros(1, 1, runner.hidden_size)
    with pytest.raises(SessionNotFound) as info:
        runner.forward("ghost", h, 5)
    assert info.value.session_id == "ghost"
    assert isinstance(info.value, ModelError)
    with pytest.raises(SessionNotFound):
        runner.truncate("ghost", 0)
    assert runner.session_count() == 0


def test_idle_sessions_are_evicted(model_dir: Path) -> None:
    clock = Clock()
    runner = TorchSegmentRunner(model_dir, 0, 1, has_embed=True, clock=clock)
    runner.forward("old", runner.embed(PROMPT), 0)
    clock.now = 5.0
    runner.forward("new", runner.embed(PROMPT), 0)
    clock.now = 12.0
    assert runner.evict_idle(clock.now, idle_timeout_s=10.0) == ["old"]
    assert runner.session_count() == 1
    with pytest.raises(SessionNotFound):
        runner.forward("old", runner.embed([1]), len(PROMPT))
    clock.now = 14.0
    runner.forward("new", runner.embed([1]), len(PROMPT))  # use refreshes the idle timer
    assert runner.evict_idle(20.0, idle_timeout_s=10.0) == []
    assert runner.evict_idle(30.0, idle_timeout_s=10.0) == ["new"]


def test_parts_not_served_and_bad_tokens(model_dir: Path) -> None:
    middle = TorchSegmentRunner(model_dir, 1, 3)
    with pytest.raises(NotServed):
        middle.embed([1])
    with pytest.raises(NotServed):
        middle.head(torch.zeros(1, 1, middle.hidden_size))
    entry = TorchSegmentRunner(model_dir, 0, 1, has_embed=True)
    for bad in ([], [-1], [entry.vocab_size], [1.5]):
        with pytest.raises(BadTokens):
            entry.embed(bad)  # type: ignore[arg-type]


def test_context_limit(tiny_model: Callable[..., Path]) -> None:
    runner = TorchSegmentRunner(
        tiny_model("llama", max_position_embeddings=16), 0, 2, has_embed=True
    )
    runner.forward("s", runner.embed(list(range(3, 18))), 0)  # 15 tokens
    runner.forward("s", runner.embed([3]), 15)  # 16: full
    with pytest.raises(ContextTooLong):
        runner.forward("s", runner.embed([3]), 16)
    with pytest.raises(ContextTooLong):
        runner.forward("t", runner.embed(list(range(3, 20))), 0)
    assert runner.session_length("s") == 16 and runner.session_length("t") is None


def test_kv_cache_grows_past_initial_capacity(model_dir: Path) -> None:
    """Decode beyond the first buffer (128 tokens) reallocates and keeps the prefix."""
    runners = chain_runners(model_dir, [0, 2, 4])
    long_prompt = [(i * 13) % 500 + 3 for i in range(126)]
    logits = pipeline.step(runners, "s", long_prompt, 0)
    pos, toks = len(long_prompt), []
    for _ in range(4):
        tok = int(torch.argmax(logits))
        toks.append(tok)
        logits = pipeline.step(runners, "s", [tok], pos)
        pos += 1
    whole = pipeline.step(runners, "w", long_prompt + toks, 0)
    torch.testing.assert_close(logits, whole, rtol=0, atol=1e-5)


def test_zero_layer_segment_is_identity(model_dir: Path) -> None:
    entry = TorchSegmentRunner(model_dir, 0, 0, has_embed=True, has_head=True)
    h = entry.embed(PROMPT)
    assert torch.equal(entry.forward("s", h, 0), h)
    assert entry.session_length("s") == len(PROMPT)
    assert entry.head(h).shape == (entry.vocab_size,)


def test_segment_beyond_model_rejected(model_dir: Path) -> None:
    with pytest.raises(ModelError):
        TorchSegmentRunner(model_dir, 2, 5)
