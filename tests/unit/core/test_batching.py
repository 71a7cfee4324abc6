"""The node's batch scheduler (edgesplit.core.batching): decode first, chunked
prefill, the per-batch limits and the KV budget."""

from __future__ import annotations

import pytest

from edgesplit.core.batching import BatchLimits, Waiting, plan_batch


def test_decode_steps_go_first_and_prefill_is_chunked() -> None:
    waiting = [Waiting(300, False), Waiting(1, True), Waiting(20, False), Waiting(1, True)]
    plan = plan_batch(waiting, BatchLimits(max_tokens=512, prefill_chunk=64))
    assert plan.take == [(1, 1), (3, 1), (0, 64), (2, 20)]
    assert plan.refused == []


def test_session_and_token_limits_hold() -> None:
    waiting = [Waiting(1, True)] * 5 + [Waiting(100, False)]
    assert len(plan_batch(waiting, BatchLimits(max_sessions=3)).take) == 3
    plan = plan_batch(waiting, BatchLimits(max_tokens=40, prefill_chunk=64))
    assert plan.take[-1] == (5, 35) and sum(n for _, n in plan.take) == 40


def test_kv_budget_shrinks_a_chunk_then_refuses_when_nothing_fits() -> None:
    limits = BatchLimits(prefill_chunk=64, kv_budget_bytes=1000)
    waiting = [Waiting(1, True, 100), Waiting(64, False, 10)]
    # 1000 - 850 used = 150: the decode step (100) fits, 5 prompt tokens (50) after it.
    assert plan_batch(waiting, limits, kv_used=850).take == [(0, 1), (1, 5)]
    full = plan_batch(waiting, limits, kv_used=995)
    assert full.take == [] and full.refused == [0, 1]


def test_no_budget_means_no_kv_check() -> None:
    plan = plan_batch([Waiting(64, False, 10**9)], BatchLimits(prefill_chunk=64), kv_used=10**12)
    assert plan.take == [(0, 64)]


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError):
        BatchLimits(max_sessions=0)
    with pytest.raises(ValueError):
        BatchLimits(kv_budget_bytes=-1)
