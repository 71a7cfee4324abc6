"""The entry's admission queue (wait, then RESOURCE_EXHAUSTED with a retry hint)
and several routes per entry (replicas), through real agents."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from edgesplit.core.route import route_from_cuts
from edgesplit.core.types import Epoch, NodeId, Plan
from edgesplit.rpc.errors import retry_after_of
from edgesplit.testbed import ensure_model
from edgesplit.v1 import inference_pb2
from tests.service.cluster import Cluster

PROMPT = [5, 17, 99, 42, 7, 300, 12, 8]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("m")
    ensure_model(base / "model", base / "shards", family="llama", layers=4, hidden=64, seed=11)
    return base


@pytest.fixture
async def one_slot(model: Path, tmp_path: Path) -> AsyncIterator[Cluster]:
    c = await Cluster.start(2, model / "shards", tmp_path, max_sessions=1, max_waiting=1,
                            max_queue_wait_s=30.0)
    await c.apply(c.plan(["node-0", "node-1"]))
    yield c
    await c.stop()


def _hold(c: Cluster, new: int = 200) -> grpc.aio.UnaryStreamCall:
    return c.inference().Generate(
        inference_pb2.GenerateRequest(token_ids=PROMPT, max_new_tokens=new), timeout=120)


async def test_a_full_queue_refuses_at_once_with_a_retry_hint(one_slot: Cluster) -> None:
    held = _hold(one_slot)
    await held.read()  # running: the one slot is taken
    waiting = asyncio.ensure_future(one_slot.generate(PROMPT, 2))  # the one queue place
    await asyncio.sleep(0.2)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await one_slot.generate(PROMPT, 2)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "retry after" in (err.value.details() or "")
    meta = dict(err.value.trailing_metadata() or ())
    assert int(meta["retry-after"]) >= 1
    hint = retry_after_of(err.value)  # from the google.rpc RetryInfo detail
    assert hint is not None and hint >= 1.0
    held.cancel()  # the waiting call gets the freed slot and completes
    assert len(await asyncio.wait_for(waiting, 60)) == 2


async def test_a_call_that_cannot_meet_its_deadline_is_refused_not_timed_out(
        one_slot: Cluster) -> None:
    # Teach the queue how long a session holds its slot: 20 tokens.
    await one_slot.generate(PROMPT, 20)
    held = _hold(one_slot)
    await held.read()
    req = inference_pb2.GenerateRequest(token_ids=PROMPT, max_new_tokens=2)
    queue = one_slot.agents[0].queue
    assert queue.hold_s is not None and queue.hold_s > 0
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await one_slot.inference().Generate(req, timeout=queue.hold_s / 4).read()
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # not DEADLINE_EXCEEDED
    held.cancel()


async def test_an_entry_spreads_new_sessions_over_its_replicas(model: Path,
                                                               tmp_path: Path) -> None:
    c = await Cluster.start(3, model / "shards", tmp_path)
    try:
        L, digest = c.manifest.num_layers, c.manifest.model_digest
        e = NodeId("node-0")
        plan = Plan(Epoch(1), digest, (
            route_from_cuts(e, [e, NodeId("node-1")], [1], L),
            route_from_cuts(e, [NodeId("node-2")], [], L, replica=1),
        ))
        await c.apply(plan)
        alone = await c.generate(PROMPT, 6)
        outs = await asyncio.gather(*(c.generate(PROMPT, 6) for _ in range(6)))
        assert all(o == alone for o in outs)  # either replica gives the same greedy tokens
        stats = c.agents[0].entry.stats
        assert set(stats.step_s) == {"node-0", "node-0#1"}  # both replicas served sessions
        assert not stats.active  # every session ended and was counted out
    finally:
        await c.stop()
