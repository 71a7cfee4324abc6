"""Sampling determinism and the wire format of hidden states."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from edgesplit.model.base import SamplingParams, WireTensor
from edgesplit.model.errors import BadFrameDtype, BadFrameShape
from edgesplit.model.sampling import Sampler
from edgesplit.model.wire import from_wire, to_wire


def _logits(seed: int = 0, vocab: int = 100) -> torch.Tensor:
    return torch.randn(vocab, generator=torch.Generator().manual_seed(seed))


def test_greedy_is_argmax_first_max() -> None:
    logits = torch.tensor([0.1, 3.0, -1.0, 3.0])
    assert Sampler(SamplingParams()).choose(logits) == 1


def test_seeded_sampling_is_reproducible() -> None:
    params = SamplingParams(temperature=0.8, top_p=0.9, seed=1234)
    draws = [[Sampler(params).choose(_logits(i)) for i in range(50)] for _ in range(2)]
    assert draws[0] == draws[1]
    a, b = Sampler(params), Sampler(params)
    seq_a = [a.choose(_logits(i)) for i in range(50)]
    assert seq_a == [b.choose(_logits(i)) for i in range(50)]
    other = Sampler(SamplingParams(temperature=0.8, top_p=0.9, seed=4321))
    assert seq_a != [other.choose(_logits(i)) for i in range(50)]


def test_top_p_keeps_only_the_nucleus() -> None:
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    s = Sampler(SamplingParams(temperature=1.0, top_p=0.7, seed=0))
    assert {s.choose(logits) for _ in range(300)} == {0, 1}
    tiny = Sampler(SamplingParams(temperature=1.0, top_p=1e-6, seed=0))
    assert {tiny.choose(logits) for _ in range(50)} == {0}


def test_stop_tokens_and_param_validation() -> None:
    s = Sampler(SamplingParams(stop_token_ids=(2, 7)))
    assert s.is_stop(2) and s.is_stop(7) and not s.is_stop(3)
    with pytest.raises(ValueError):
        SamplingParams(temperature=-1.0)
    with pytest.raises(ValueError):
        SamplingParams(top_p=0.0)
    with pytest.raises(ValueError):
        Sampler(SamplingParams()).choose(torch.zeros(1, 5))


def test_pipeline_stops_at_stop_token() -> None:
    from edgesplit.model import pipeline
    from edgesplit.model.fake import FakeSegmentRunner

    runners = [FakeSegmentRunner(0, 2, has_embed=True), FakeSegmentRunner(2, 2, has_head=True)]
    free = pipeline.generate(runners, [1, 2, 3], 10)
    stop = free[3]
    got = pipeline.generate(runners, [1, 2, 3], 10, SamplingParams(stop_token_ids=(stop,)))
    assert got == free[: free.index(stop) + 1]


def test_float32_round_trip_is_exact() -> None:
    t = torch.randn(1, 5, 64)
    w = to_wire(t)
    assert (w.shape, w.dtype, len(w.data)) == ((1, 5, 64), "float32", 5 * 64 * 4)
    assert torch.equal(from_wire(w), t)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_wire_dtypes(dtype: str) -> None:
    t = torch.randn(1, 3, 32)
    w = to_wire(t, dtype)
    assert len(w.data) == 3 * 32 * 2
    back = from_wire(w, dtype=torch.float32)
    assert back.dtype == torch.float32
    torch.testing.assert_close(back, t, rtol=1e-2, atol=1e-2)
    assert torch.equal(from_wire(w), t.to(getattr(torch, dtype)))


def test_wire_validation() -> None:
    with pytest.raises(BadFrameDtype):
        WireTensor(b"\0" * 4, (1,), "int8")
    with pytest.raises(BadFrameShape):
        WireTensor(b"\0" * 5, (1,), "float32")
    with pytest.raises(BadFrameShape):
        WireTensor(b"", (-1,), "float32")
    with pytest.raises(BadFrameDtype):
        to_wire(torch.randn(2), "float64")
    with pytest.raises(BadFrameDtype):
        to_wire(torch.arange(3))
    w = to_wire(torch.randn(1, 2, 8))
    with pytest.raises(BadFrameShape):
        from_wire(w, expect_shape=(1, None, 16))
    assert from_wire(w, expect_shape=(1, None, 8)).shape == (1, 2, 8)


@settings(max_examples=40, deadline=None)
@given(
    shape=st.lists(st.integers(0, 6), min_size=1, max_size=4),
    dtype=st.sampled_from(["float32", "bfloat16", "float16"]),
    seed=st.integers(0, 2**31 - 1),
)
def test_wire_round_trip_property(shape: list[int], dtype: str, seed: int) -> None:
    t = torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(getattr(torch, dtype))
    w = to_wire(t, dtype)
    assert len(w.data) == math.prod(shape) * (4 if dtype == "float32" else 2)
    back = from_wire(WireTensor(bytes(w.data), tuple(w.shape), w.dtype))
    assert back.shape == t.shape and torch.equal(back, t)


def test_runner_decode_hidden_checks_shape() -> None:
    from edgesplit.model.fake import FakeSegmentRunner

    fake = FakeSegmentRunner(0, 1, hidden_size=8)
    with pytest.raises(BadFrameShape):
        fake.decode_hidden(WireTensor(b"\0" * 4 * 16, (1, 1, 16), "float32"))
