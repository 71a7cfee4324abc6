"""The entry's admission queue: slots, a bounded wait by deadline, refusals with a hint."""

from __future__ import annotations

import asyncio

import pytest

from services.node_agent.queue import AdmissionQueue, Overloaded, QueueLimits


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_waiters_get_freed_slots_earliest_deadline_first() -> None:
    q = AdmissionQueue(QueueLimits(max_sessions=1, max_waiting=3, max_wait_s=30))
    assert await q.acquire() == 0.0
    order: list[str] = []

    async def wait(name: str, deadline: float | None) -> None:
        await q.acquire(deadline)
        order.append(name)

    now = q.clock()
    tasks = [asyncio.ensure_future(wait("late", now + 20)),
             asyncio.ensure_future(wait("none", None)),
             asyncio.ensure_future(wait("soon", now + 10))]
    await asyncio.sleep(0.01)
    assert q.waiting == 3 and q.running == 1
    for _ in range(3):
        q.release()
        await asyncio.sleep(0.01)
    assert order == ["soon", "late", "none"]
    assert q.running == 1 and q.waiting == 0
    await asyncio.gather(*tasks)


async def test_a_full_queue_refuses_at_once_with_a_bounded_hint() -> None:
    q = AdmissionQueue(QueueLimits(max_sessions=2, max_waiting=0, min_retry_after_s=1.0,
                                   max_retry_after_s=5.0))
    await q.acquire()
    await q.acquire()
    with pytest.raises(Overloaded) as err:
        await q.acquire()
    assert err.value.retry_after_s == 1.0 and q.refused == 1  # nothing measured yet: the floor
    q.hold_s = 40.0  # sessions hold their slot 40 s: the next slot frees in ~20 s
    with pytest.raises(Overloaded) as err:
        await q.acquire()
    assert err.value.retry_after_s == 5.0  # capped


async def test_a_call_whose_deadline_the_wait_passes_is_refused_at_once() -> None:
    clock = Clock()
    q = AdmissionQueue(QueueLimits(max_sessions=1, max_waiting=4), clock)
    async with q.slot():
        clock.now += 8.0  # this session held its slot 8 s
    assert q.hold_s == pytest.approx(8.0)
    await q.acquire()
    with pytest.raises(Overloaded, match="passes the deadline"):
        await q.acquire(deadline=clock.now + 2.0)
    assert q.waiting == 0  # refused before it ever queued


async def test_waiting_too_long_is_refused_and_cancelled_waiters_leave() -> None:
    q = AdmissionQueue(QueueLimits(max_sessions=1, max_waiting=4, max_wait_s=0.05))
    await q.acquire()
    with pytest.raises(Overloaded, match="no session slot"):
        await q.acquire()
    gone = asyncio.ensure_future(q.acquire(deadline=q.clock() + 60))
    await asyncio.sleep(0.01)
    assert q.waiting == 1
    gone.cancel()
    await asyncio.sleep(0.01)
    assert q.waiting == 0
    q.release()  # nobody waits any more: the slot is free again
    assert q.running == 0
