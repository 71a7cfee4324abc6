"""Continuous batching across real node agents: sessions that join and leave
while others decode get the tokens they get alone; their steps really share
batches and batched frames; a step the KV budget cannot hold is refused
RESOURCE_EXHAUSTED at once, not replayed (docs/data-plane.md, batching)."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
import pytest

from edgesplit.testbed import ensure_model
from edgesplit.v1 import inference_pb2
from tests.service.cluster import Cluster

NEW = 6


def _count_kinds(cluster: Cluster) -> Counter[str]:
    """Link messages received, by kind, on every agent."""
    kinds: Counter[str] = Counter()
    for agent in cluster.agents:
        stage = agent.stage
        inner = stage.on_message

        def on_message(msg: Any, inner: Any = inner) -> Any:
            kinds[msg.WhichOneof("kind")] += 1
            return inner(msg)

        stage.on_message = on_message
    return kinds


def _batch_sizes(cluster: Cluster) -> list[int]:
    sizes: list[int] = []
    for agent in cluster.agents:
        for runner in agent.control.book.all_runners():
            inner = runner.forward_batch

            def forward_batch(steps: Any, inner: Any = inner) -> Any:
                sizes.append(len(steps))
                return inner(steps)

            runner.forward_batch = forward_batch
    return sizes


async def test_sessions_joining_and_leaving_equal_each_alone(tmp_path: Path) -> None:
    shards = ensure_model(tmp_path / "model", tmp_path / "shards", family="qwen3", layers=4,
                          hidden=64, seed=3)
    cluster = await Cluster.start(3, shards, tmp_path, prefill_chunk_tokens=32)
    try:
        await cluster.apply(cluster.plan(["node-0", "node-1", "node-2"]))
        rng = random.Random(11)
        prompts = [[rng.randrange(3, 200) for _ in range(n)] for n in (1, 3, 150, 40, 7, 90)]
        kw = [{} if i % 2 else {"sampling": inference_pb2.SamplingParams(temperature=0.8,
                                                                       top_p=0.9, seed=i)}
              for i in range(len(prompts))]
        alone = [await cluster.generate(p, NEW, **k) for p, k in zip(prompts, kw, strict=True)]
        kinds, sizes = _count_kinds(cluster), _batch_sizes(cluster)

        async def late(i: int) -> list[int]:
            await asyncio.sleep(0.05 * i)  # join while the others decode
            return await cluster.generate(prompts[i], NEW + i % 3, **kw[i])

        together = await asyncio.gather(*(late(i) for i in range(len(prompts))))
        for i, (got, want) in enumerate(zip(together, alone, strict=True)):
            assert got[:NEW] == want, i
        assert max(sizes) > 1, "no two steps ever shared a batch"
        assert kinds["batch_frame"] > 0, "no batched frame crossed a link"
    finally:
        await cluster.stop()


async def test_step_beyond_the_kv_budget_is_refused_at_once(tmp_path: Path) -> None:
    shards = ensure_model(tmp_path / "model", tmp_path / "shards", family="qwen3", layers=4,
                          hidden=64, seed=3)
    # 2 layers x 2 kv heads x 16 dims x K,V x 4 bytes = 512 bytes a token per node;
    # a cache holds room for 128 tokens at first (64 KiB), doubling as it grows.
    cluster = await Cluster.start(2, shards, tmp_path, kv_budget_mb=96 / 1024)
    try:
        await cluster.apply(cluster.plan(["node-0", "node-1"]))
        assert len(await cluster.generate([5, 6, 7], 2)) == 2  # small: fits
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await cluster.generate([rng % 190 + 3 for rng in range(300)], 2)  # 150 KiB
        assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert len(await cluster.generate([5, 6, 7], 2)) == 2  # its KV was freed
    finally:
        await cluster.stop()


async def test_sessions_started_apart_end_up_in_one_wave(tmp_path: Path) -> None:
    """With one wave kept on the ring, sessions that start at different times
    are gathered into it (core.waves): after a few steps every node runs all
    of them as one batch, and each still gets the tokens it gets alone."""
    shards = ensure_model(tmp_path / "model", tmp_path / "shards", family="qwen3", layers=4,
                          hidden=64, seed=3)
    cluster = await Cluster.start(3, shards, tmp_path, ring_waves=1)
    try:
        await cluster.apply(cluster.plan(["node-0", "node-1", "node-2"]))
        prompts = [[3 + i, 40 + i, 7] for i in range(4)]
        new = 24
        alone = [await cluster.generate(p, new) for p in prompts]
        sizes = _batch_sizes(cluster)

        async def late(i: int) -> list[int]:
            await asyncio.sleep(0.03 * i)
            return await cluster.generate(prompts[i], new)

        together = await asyncio.gather(*(late(i) for i in range(len(prompts))))
        assert together == alone
        # Once gathered they stay together: all four share a batch for at least
        # half the steps (without waves they never all do: at most three).
        assert sizes.count(len(prompts)) >= new // 2, \
            f"the sessions did not travel together: batch sizes {sizes}"
    finally:
        await cluster.stop()
