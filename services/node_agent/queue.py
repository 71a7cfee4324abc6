"""The entry's admission queue: sessions running at once, and a bounded wait before them.

``max_sessions`` Generate calls run at once. A call that finds them all busy
waits in a queue of at most ``max_waiting`` calls, served earliest deadline
first; it is refused at once — RESOURCE_EXHAUSTED with a retry-after hint,
never left to time out — when the queue is full or when the estimated wait
(its place in the queue times the mean time a session holds its slot, over
the slots) would pass its deadline, and refused the same way if it has
waited ``max_wait_s`` without a slot. Cancelled waiters leave the queue at
once. Pure asyncio: no grpc, no torch (the boundary maps the error and puts
the hint into trailing metadata: ``edgesplit.rpc.errors``).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from edgesplit.core.ewma import ewma_step
from edgesplit.errors import Code, DomainError

HOLD_ALPHA = 0.2  # EWMA weight of the newest session hold time


class Overloaded(DomainError, RuntimeError):
    """The entry cannot start this session in time; retry after ``retry_after_s``."""

    code = Code.RESOURCE_EXHAUSTED

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(f"{message}; retry after {retry_after_s:.1f}s")
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class QueueLimits:
    max_sessions: int = 64  # Generate calls running at once
    max_waiting: int = 64  # calls waiting for a slot; beyond it, refused at once
    max_wait_s: float = 10.0  # a call that waited this long without a slot is refused
    min_retry_after_s: float = 1.0  # the hint never says "retry now"
    max_retry_after_s: float = 60.0


class AdmissionQueue:
    def __init__(self, limits: QueueLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self.clock = clock
        self.running = 0
        self._waiters: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self.hold_s: float | None = None  # EWMA of how long a session holds its slot
        self.refused = 0

    @property
    def waiting(self) -> int:
        return sum(1 for _, _, f in self._waiters if not f.done())

    def expected_wait_s(self, position: int) -> float:
        """Seconds until the ``position``-th waiter (1: the next) gets a slot."""
        if self.hold_s is None:
            return 0.0
        return self.hold_s * position / self.limits.max_sessions

    def retry_after_s(self) -> float:
        lim = self.limits
        guess = self.expected_wait_s(self.waiting + 1)
        return min(max(guess, lim.min_retry_after_s), lim.max_retry_after_s)

    def _refuse(self, why: str) -> Overloaded:
        self.refused += 1
        return Overloaded(why, self.retry_after_s())

    async def acquire(self, deadline: float | None = None) -> float:
        """A slot (seconds waited for it), or ``Overloaded``. ``deadline`` is
        on this queue's clock; None: the call has none."""
        lim = self.limits
        if self.running < lim.max_sessions and not self.waiting:
            self.running += 1
            return 0.0
        now = self.clock()
        if self.waiting >= lim.max_waiting:
            raise self._refuse(f"entry is serving {self.running} sessions and "
                               f"{self.waiting} are waiting")
        wait = self.expected_wait_s(self.waiting + 1)
        if deadline is not None and now + wait >= deadline:
            raise self._refuse(f"the expected wait of {wait:.1f}s passes the deadline")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (math.inf if deadline is None else deadline,
                                       next(self._seq), future))
        budget = lim.max_wait_s if deadline is None else min(lim.max_wait_s, deadline - now)
        try:
            await asyncio.wait_for(asyncio.shield(future), budget)
        except TimeoutError:
            if not future.done():
                future.cancel()
                raise self._refuse(f"no session slot within {budget:.1f}s") from None
            # The slot came as the wait ran out: it is ours.
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # handed a slot just as the caller went away
            else:
                future.cancel()
            raise
        return self.clock() - now

    def release(self, held_s: float | None = None) -> None:
        """Free a slot: hand it to the earliest-deadline waiter, if any."""
        if held_s is not None:
            self.hold_s = ewma_step(self.hold_s, held_s, HOLD_ALPHA)
        while self._waiters:
            _, _, future = heapq.heappop(self._waiters)
            if not future.done():
                future.set_result(None)  # the slot passes on: running stays
                return
        self.running -= 1

    @asynccontextmanager
    async def slot(self, deadline: float | None = None) -> AsyncIterator[float]:
        """``acquire`` (yields the seconds waited), ``release`` however the block ends."""
        waited = await self.acquire(deadline)
        start = self.clock()
        try:
            yield waited
        finally:
            self.release(self.clock() - start)
