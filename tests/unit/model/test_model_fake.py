"""The fake runner: no torch, same rules as the real one, cut-invariant tokens."""

from __future__ import annotations

import subprocess
import sys

import pytest

from edgesplit.core.route import RouteError
from edgesplit.model import pipeline
from edgesplit.model.base import SamplingParams
from edgesplit.model.errors import (
    BadFrameDtype,
    BadFrameShape,
    BadTokens,
    ContextTooLong,
    NotServed,
    PositionMismatch,
    SessionNotFound,
)
from edgesplit.model.fake import FakeHidden, FakeSegmentRunner


def fakes(cuts: list[int], **kwargs: object) -> list[FakeSegmentRunner]:
    return [
        FakeSegmentRunner(s.start, s.end, s.has_embed, s.has_head, **kwargs)  # type: ignore[arg-type]
        for s in pipeline.chain_specs(cuts)
    ]


def test_importing_fake_and_package_loads_no_torch() -> None:
    code = (
        "import sys; import edgesplit.model; from edgesplit.model.fake import FakeSegmentRunner; "
        "from edgesplit.model import pipeline; "
        "r = [FakeSegmentRunner(0, 2, has_embed=True), FakeSegmentRunner(2, 2, has_head=True)]; "
        "assert pipeline.generate(r, [1, 2], 4); "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_tokens_do_not_depend_on_cuts_or_wire() -> None:
    prompt = [3, 14, 15, 9, 26]
    want = pipeline.generate(fakes([0, 6]), prompt, 12)
    assert len(set(want)) > 1
    for cuts in ([0, 2, 6], [0, 1, 3, 4, 6], [0, 0, 6]):
        assert pipeline.generate(fakes(cuts), prompt, 12) == want
    assert pipeline.generate(fakes([0, 3, 6]), prompt, 12, wire_dtype="float32") == want
    assert pipeline.generate(fakes([0, 3, 6]), prompt, 12, wire_dtype="bfloat16")


def test_history_matters_and_sessions_are_isolated() -> None:
    runners = fakes([0, 2, 4])
    a = pipeline.step(runners, "a", [1, 2, 3], 0)
    b = pipeline.step(runners, "b", [9, 2, 3], 0)
    assert pipeline.step(runners, "a", [7], 3) != pipeline.step(runners, "b", [7], 3)
    assert a != b


def test_sampling_seeded() -> None:
    params = SamplingParams(temperature=2.0, seed=7)
    one = pipeline.generate(fakes([0, 3]), [1, 2], 20, params)
    assert one == pipeline.generate(fakes([0, 3]), [1, 2], 20, params)


def test_session_rules_and_errors() -> None:
    now = [0.0]
    r = FakeSegmentRunner(0, 2, has_embed=True, max_length=8, clock=lambda: now[0])
    h = r.embed([1, 2, 3])
    r.forward("s", h, 0)
    with pytest.raises(PositionMismatch):
        r.forward("s", r.embed([4]), 5)
    with pytest.raises(SessionNotFound):
        r.forward("x", r.embed([4]), 3)
    with pytest.raises(BadFrameShape):
        r.forward("s", FakeHidden(((0.0,) * 3,)), 3)
    with pytest.raises(BadFrameDtype):
        r.forward("s", FakeHidden(((0.0,) * 8,), dtype="bfloat16"), 3)
    with pytest.raises(ContextTooLong):
        r.forward("s", r.embed([1] * 6), 3)
    with pytest.raises(BadTokens):
        r.embed([r.vocab_size])
    with pytest.raises(NotServed):
        r.head(h)
    assert r.session_length("s") == 3
    r.truncate("s", 1)
    now[0] = 100.0
    r.forward("s", r.embed([2, 3]), 1)
    assert r.session_length("s") == 3 and r.calls == 2
    assert r.evict_idle(100.0, 10.0) == []
    assert r.evict_idle(111.0, 10.0) == ["s"] and r.session_count() == 0 and r.kv_bytes() == 0


def test_replay_after_truncate_reproduces_logits() -> None:
    runners = fakes([0, 2, 3])
    pipeline.step(runners, "s", [1, 2, 3, 4], 0)
    first = pipeline.step(runners, "s", [5], 4)
    for r in runners:
        r.truncate("s", 4)
    assert pipeline.step(runners, "s", [5], 4) == first


def test_pipeline_runs_only_the_one_route_shape() -> None:
    """``pipeline.generate`` checks its chain with ``core.route.check_route``."""
    with pytest.raises(RouteError, match="old test-bed shape"):  # head on the first runner
        pipeline.generate([FakeSegmentRunner(0, 3, has_embed=True, has_head=True),
                           FakeSegmentRunner(3, 6)], [1, 2], 4)
    with pytest.raises(RouteError, match="embed and head on one segment"):
        pipeline.generate([FakeSegmentRunner(0, 6, has_embed=True, has_head=True)], [1, 2], 4)
    with pytest.raises(RouteError, match="head segment must hold no layers"):
        pipeline.generate([FakeSegmentRunner(0, 3, has_embed=True),
                           FakeSegmentRunner(3, 6, has_head=True)], [1, 2], 4)
    with pytest.raises(RouteError, match="gap"):
        pipeline.generate([FakeSegmentRunner(0, 2, has_embed=True), FakeSegmentRunner(3, 6),
                           FakeSegmentRunner(6, 6, has_head=True)], [1, 2], 4)
    assert [(s.start, s.end, s.has_embed, s.has_head) for s in pipeline.chain_specs([0, 0, 6])] \
        == [(0, 0, True, False), (0, 6, False, False), (6, 6, False, True)]
