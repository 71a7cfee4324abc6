"""The node's batch queue gathers what arrives a few loop turns apart: new
sessions' first steps (prompts, and the replays a failover's commit moves at
once) run as one batch instead of one batch each."""

from __future__ import annotations

import asyncio
from typing import Any

from edgesplit.core.batching import BatchLimits
from services.node_agent.batcher import Batcher, Step, Work


class HeldCompute:
    """Records each batch handed over (its size) and never finishes one."""

    def __init__(self) -> None:
        self.queued = 0
        self.batches: list[int] = []

    def start(self, work: Any, done: Any) -> None:
        self.batches.append(self.queued)


def first_step(session: str, hop: int = 0, step: int = 0) -> Work:
    return Work(es=None, route=None, hop=hop, step=Step(session, step, 0), tokens=7,
                load=lambda runner: None)


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def test_first_steps_a_few_turns_apart_run_as_one_batch() -> None:
    compute = HeldCompute()
    b = Batcher("entry", compute, BatchLimits(), 1 << 20, list, lambda outcomes: None)  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    b.put([first_step("a")])
    loop.call_soon(b.put, [first_step("b")])
    loop.call_soon(lambda: loop.call_soon(b.put, [first_step("c")]))  # a turn later
    await settle()
    assert compute.batches == [3]


async def test_a_frames_steps_do_not_wait() -> None:
    """Steps from the hop before are all queued when their frame arrives: they
    start at once (a decode step of a running session is not held either)."""
    compute = HeldCompute()
    b = Batcher("edge", compute, BatchLimits(), 1 << 20, list, lambda outcomes: None)  # type: ignore[arg-type]
    b.put([first_step("a", hop=1), first_step("b", hop=1, step=4)])
    assert compute.batches == [2]  # at once, before any loop turn
    await settle()
    assert compute.batches == [2]
