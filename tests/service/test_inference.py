"""Inference.Generate features through real agents: chunked frames, reduced
wire dtypes, seeded sampling, stop tokens, privacy=high, bad requests, the
admission queue (wait, then RESOURCE_EXHAUSTED with a retry hint) and
several routes per entry (replicas)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import torch
from prometheus_client import REGISTRY
from transformers import AutoModelForCausalLM

from edgesplit.core.route import route_from_cuts
from edgesplit.core.types import Epoch, NodeId, Plan
from edgesplit.errors import PRIVACY_UNSATISFIABLE
from edgesplit.rpc.errors import error_details, retry_after_of
from edgesplit.testbed import ensure_model
from edgesplit.v1 import common_pb2, inference_pb2
from tests.service.cluster import Cluster

TokenIds = inference_pb2.TokenIds

PROMPT = [5, 17, 99, 42, 7, 300, 12, 8, 66, 150, 23, 4, 77, 31, 9, 250, 101]
SHORT = PROMPT[:8]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("m")
    ensure_model(base / "model", base / "shards", family="llama", layers=4, hidden=64, seed=11)
    return base


@pytest.fixture
async def cluster(model: Path, tmp_path: Path) -> AsyncIterator[Cluster]:
    # 1 KiB chunks: a 17-token prefill frame (17 x 64 x 4 bytes) crosses in 5 chunks.
    c = await Cluster.start(3, model / "shards", tmp_path, frame_chunk_bytes=1024)
    yield c
    await c.stop()


def _reference(model: Path, n: int) -> list[int]:
    m = AutoModelForCausalLM.from_pretrained(model / "model", dtype=torch.float32).eval()
    x = torch.tensor([PROMPT])
    out = m.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=n, do_sample=False,
                     pad_token_id=0, eos_token_id=None)
    return [int(t) for t in out[0, len(PROMPT):]]


def _sent(metric_name: str) -> float:
    return sum(s.value for metric in REGISTRY.collect() if metric.name == metric_name
               for s in metric.samples if s.name.endswith("_total"))


def _sent_bytes() -> float:
    return _sent("edgesplit_frame_bytes_sent")


async def test_chunked_frames_give_identical_tokens(cluster: Cluster, model: Path) -> None:
    await cluster.apply(cluster.plan(["node-0", "node-1", "node-2"]))
    want = _reference(model, 8)
    frames = _sent("edgesplit_frames_sent")
    got = await cluster.generate(PROMPT, 8)
    assert got == want[:len(got)]
    # 3 hops a step; the 17-token prefill frame (4352 bytes) goes as 5 chunks a hop.
    assert _sent("edgesplit_frames_sent") - frames == 3 * 5 + 3 * (len(got) - 1)


async def test_bfloat16_wire_halves_the_bytes(cluster: Cluster) -> None:
    await cluster.apply(cluster.plan(["node-0", "node-1", "node-2"]))
    start = _sent_bytes()
    a = await cluster.generate(PROMPT, 6)
    f32 = _sent_bytes() - start
    await cluster.apply(cluster.plan(["node-0", "node-1", "node-2"]), wire_dtype="bfloat16")
    start = _sent_bytes()
    b = await cluster.generate(PROMPT, 6)
    bf16 = _sent_bytes() - start
    assert len(a) >= 1 and len(b) >= 1  # bf16 rounding may change tokens, never the flow
    assert bf16 < 0.6 * f32


async def test_seeded_sampling_is_reproducible_and_stop_tokens_stop(cluster: Cluster) -> None:
    await cluster.apply(cluster.plan(["node-0", "node-1"]))
    sampling = inference_pb2.SamplingParams(temperature=1.5, top_p=0.9, seed=1234)
    one = await cluster.generate(PROMPT, 12, sampling=sampling)
    two = await cluster.generate(PROMPT, 12, sampling=sampling)
    other = await cluster.generate(PROMPT, 12, sampling=inference_pb2.SamplingParams(
        temperature=1.5, top_p=0.9, seed=99))
    assert one == two and one != other
    greedy = await cluster.generate(PROMPT, 8)
    stop_at = greedy[2]
    req = inference_pb2.GenerateRequest(token_ids=TokenIds(ids=PROMPT), max_new_tokens=8,
                                        stop_token_ids=[stop_at])
    replies = [r async for r in cluster.inference().Generate(req, timeout=60)]
    assert [r.token_id for r in replies] == greedy[:greedy.index(stop_at) + 1]
    assert replies[-1].finish_reason == inference_pb2.FINISH_REASON_STOP
    assert not any(r.finish_reason for r in replies[:-1])


def _leaky_plan(cluster: Cluster) -> Plan:
    """Layer 0 (sensitive at privacy_depth 1) on node-1; embed and head on the entry."""
    route = route_from_cuts(NodeId("node-0"), [NodeId("node-1")], [], 4)
    return Plan(Epoch(cluster.epoch + 1), cluster.manifest.model_digest, (route,))


async def test_privacy_high_refused_on_an_untrusted_route(cluster: Cluster) -> None:
    await cluster.apply(_leaky_plan(cluster), trusted=["node-0"])
    low = await cluster.generate(PROMPT, 3)
    assert len(low) == 3
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await cluster.generate(PROMPT, 3, privacy=common_pb2.PRIVACY_HIGH)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    details = error_details(err.value)  # what the gateway branches on
    assert details.reason == PRIVACY_UNSATISFIABLE and details.fields == ("privacy",)
    await cluster.apply(_leaky_plan(cluster), trusted=["node-0", "node-1"])
    assert len(await cluster.generate(PROMPT, 3, privacy=common_pb2.PRIVACY_HIGH)) == 3


async def test_unstated_privacy_means_the_entrys_default(model: Path, tmp_path: Path) -> None:
    # PRIVACY_UNSPECIFIED is the entry's --default-privacy, not the weaker level:
    # with default high, a request that forgets privacy is refused a leaky route
    # exactly like one that asks for high, and one that says low is served.
    c = await Cluster.start(2, model / "shards", tmp_path, default_privacy="high")
    try:
        await c.apply(_leaky_plan(c), trusted=["node-0"])
        for stated in ({}, {"privacy": common_pb2.PRIVACY_HIGH}):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await c.generate(PROMPT, 2, **stated)
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION, stated
        assert len(await c.generate(PROMPT, 2, privacy=common_pb2.PRIVACY_LOW)) == 2
    finally:
        await c.stop()


SAMPLING = inference_pb2.SamplingParams


@pytest.mark.parametrize("request_kw,field", [
    # "both" cannot be sent: prompt and token_ids are one oneof
    # (test_prompt_is_one_of_text_or_ids).
    ({}, "input"),
    ({"prompt": ""}, "input"),
    ({"token_ids": TokenIds(ids=[])}, "input"),
    ({"token_ids": TokenIds(ids=[10**6])}, "token_ids.ids"),
    ({"token_ids": TokenIds(ids=PROMPT), "max_new_tokens": 100_000}, "max_new_tokens"),
    ({"token_ids": TokenIds(ids=PROMPT), "sampling": SAMPLING(temperature=-1)},
     "sampling.temperature"),
    ({"token_ids": TokenIds(ids=PROMPT * 200)}, "max_new_tokens"),  # beyond the context
    # Admission (services/node_agent/admission.py), before any route or tokeniser work:
    ({"prompt": "x" * (8 << 20)}, "prompt"),  # 8 MB of text
    ({"token_ids": TokenIds(ids=PROMPT), "request_id": "r" * 300}, "request_id"),
    ({"token_ids": TokenIds(ids=PROMPT), "request_id": "a/b"}, "request_id"),
    ({"token_ids": TokenIds(ids=PROMPT), "sampling": SAMPLING(temperature=1e-300)},
     "sampling.temperature"),
])
async def test_bad_requests(cluster: Cluster, request_kw: dict[str, object], field: str) -> None:
    await cluster.apply(cluster.plan(["node-0", "node-1"]))
    req = inference_pb2.GenerateRequest(**request_kw)  # type: ignore[arg-type]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        _ = [r async for r in cluster.inference().Generate(req, timeout=60)]
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # The refusal names the request field at fault in a BadRequest detail.
    assert error_details(err.value).fields == (field,)


def test_prompt_is_one_of_text_or_ids() -> None:
    req = inference_pb2.GenerateRequest(prompt="hi")
    req.token_ids.ids.append(5)  # setting one side clears the other
    assert req.WhichOneof("input") == "token_ids" and req.prompt == ""
    req.prompt = "hi"
    assert req.WhichOneof("input") == "prompt" and not req.HasField("token_ids")


async def test_per_client_quota_and_an_unharmed_entry(model: Path, tmp_path: Path) -> None:
    """One client (here: one address) may hold max_sessions_per_client sessions;
    the next is RESOURCE_EXHAUSTED at once, and greedy output is unchanged after."""
    c = await Cluster.start(2, model / "shards", tmp_path, max_sessions_per_client=1)
    try:
        await c.apply(c.plan(["node-0", "node-1"]))
        before = await c.generate(PROMPT, 4)
        held = c.inference().Generate(
            inference_pb2.GenerateRequest(token_ids=TokenIds(ids=PROMPT), max_new_tokens=64),
            timeout=60)
        await held.read()  # the first token: the session is admitted and running
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await c.generate(PROMPT, 2)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        held.cancel()  # frees the slot once the entry sees the cancellation
        for _ in range(100):
            try:
                after = await c.generate(PROMPT, 4)
                break
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                await asyncio.sleep(0.05)
        assert after == before
    finally:
        await c.stop()


async def test_not_an_entry_and_no_epoch(model: Path, tmp_path: Path) -> None:
    c = await Cluster.start(2, model / "shards", tmp_path)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await c.generate(PROMPT, 2)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE  # nothing committed yet
        await c.apply(c.plan(["node-0", "node-1"]))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await c.generate(PROMPT, 2, entry="node-1")
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    finally:
        await c.stop()


@pytest.fixture
async def one_slot(model: Path, tmp_path: Path) -> AsyncIterator[Cluster]:
    c = await Cluster.start(2, model / "shards", tmp_path, max_sessions=1, max_waiting=1,
                            max_queue_wait_s=30.0)
    await c.apply(c.plan(["node-0", "node-1"]))
    yield c
    await c.stop()


def _hold(c: Cluster, new: int = 200) -> grpc.aio.UnaryStreamCall:
    return c.inference().Generate(
        inference_pb2.GenerateRequest(token_ids=TokenIds(ids=SHORT), max_new_tokens=new), timeout=120)


async def test_a_full_queue_refuses_at_once_with_a_retry_hint(one_slot: Cluster) -> None:
    held = _hold(one_slot)
    await held.read()  # running: the one slot is taken
    waiting = asyncio.ensure_future(one_slot.generate(SHORT, 2))  # the one queue place
    queue = one_slot.agents[0].queue
    for _ in range(600):  # until it is in the queue (not a fixed sleep: loaded machines)
        if queue.waiting:
            break
        await asyncio.sleep(0.05)
    assert queue.waiting == 1
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await one_slot.generate(SHORT, 2)
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
    await one_slot.generate(SHORT, 20)
    held = _hold(one_slot)
    await held.read()
    req = inference_pb2.GenerateRequest(token_ids=TokenIds(ids=SHORT), max_new_tokens=2)
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
        alone = await c.generate(SHORT, 6)
        outs = await asyncio.gather(*(c.generate(SHORT, 6) for _ in range(6)))
        assert all(o == alone for o in outs)  # either replica gives the same greedy tokens
        stats = c.agents[0].entry.stats
        assert set(stats.step_s) == {"node-0", "node-0#1"}  # both replicas served sessions
        assert not stats.active  # every session ended and was counted out
    finally:
        await c.stop()
