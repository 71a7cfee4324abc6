"""The node's compute: one thread that runs segment work, timed per runner call.

A node runs one piece of work at a time, as a device would; the event loop
stays free for the network while torch works. Work hands a :class:`Timer` the
runner calls it makes, so one hand-off to the thread can run several local
hops (and, on the entry, the head) while each is still timed on its own.

How long a run *counts* is the compute clock's business: :class:`NativeClock`
in production; the test bed's emulator (``emulation.py``) scales it to a
slower device and holds the step for the difference.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from services.node_agent import metrics as m

T = TypeVar("T")
# hook (telemetry.py): observer(runner, phase, seconds, tokens) after each timed call
ComputeObserver = Callable[[Any, str, float, int], None]


class ComputeClock(Protocol):
    def seconds(self, wall_s: float, cpu_s: float) -> float:
        """How long a call that took ``wall_s`` (``cpu_s`` on its thread) counts."""

    async def hold(self, extra_s: float) -> None:
        """Keep the step waiting for ``extra_s`` more (the counted minus the real time)."""


class NativeClock:
    """Compute counts what it takes."""

    def seconds(self, wall_s: float, cpu_s: float) -> float:
        return wall_s

    async def hold(self, extra_s: float) -> None:
        return None


@dataclass(slots=True)
class _Section:
    runner: Any
    phase: str
    tokens: int
    wall_s: float
    cpu_s: float


@dataclass(slots=True)
class Timer:
    """Times each runner call made on the compute thread."""

    sections: list[_Section] = field(default_factory=list)

    def run(self, runner: Any, phase: str, tokens: int, fn: Callable[[], T]) -> T:
        # CPU time too: an emulated slower device scales it, since it does not
        # grow when other processes share the cores.
        start, cpu = time.perf_counter(), time.thread_time()
        result = fn()
        self.sections.append(_Section(runner, phase, tokens, time.perf_counter() - start,
                                      time.thread_time() - cpu))
        return result


class Compute:
    """The single compute thread of a node."""

    def __init__(self, torch_threads: int = 0, clock: ComputeClock | None = None) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="segment",
                                            initializer=_set_threads, initargs=(torch_threads,))
        self.clock: ComputeClock = clock or NativeClock()
        self.observer: ComputeObserver | None = None
        self.in_flight = 0
        self.queued = 0  # steps waiting for a batch (set by the batcher)
        self._holds: set[asyncio.Task[None]] = set()

    @property
    def queue_depth(self) -> int:
        """Work waiting behind what the compute thread is doing (the report's
        queue): runs handed over, and steps waiting for the next batch."""
        return max(0, self.in_flight - 1) + self.queued

    def start(self, work: Callable[[Timer], T],
              done: Callable[[T | None, Exception | None], None]) -> None:
        """Hand ``work`` to the compute thread now (it starts before the caller
        goes on, e.g. to write an ack); ``done(result, error)`` runs on the event
        loop when it ends, one loop turn after (awaiting a future costs two), or
        once the clock's hold is over."""
        loop = asyncio.get_running_loop()
        timer = Timer()
        self.in_flight += 1

        def run() -> None:
            try:
                result, error = work(timer), None
            except Exception as exc:  # noqa: BLE001 - handed to done
                result, error = None, exc
            try:
                loop.call_soon_threadsafe(self._ended, timer, result, error, done)
            except RuntimeError:  # the loop closed meanwhile (shutdown)
                pass

        self._executor.submit(run)

    def _ended(self, timer: Timer, result: T | None, error: Exception | None,
               done: Callable[[T | None, Exception | None], None]) -> None:
        self.in_flight -= 1
        extra = 0.0
        for s in timer.sections:
            seconds = self.clock.seconds(s.wall_s, s.cpu_s)
            extra += seconds - s.wall_s
            m.COMPUTE.labels(s.phase).observe(seconds)
            if self.observer is not None:
                self.observer(s.runner, s.phase, seconds, s.tokens)
        if extra > 0:
            self._holds.add(task := asyncio.get_running_loop().create_task(
                self._hold(extra, done, result, error)))
            task.add_done_callback(self._holds.discard)
        else:
            done(result, error)

    async def _hold(self, extra_s: float, done: Callable[[T | None, Exception | None], None],
                    result: T | None, error: Exception | None) -> None:
        await self.clock.hold(extra_s)
        done(result, error)

    def close(self) -> None:
        for task in self._holds:
            task.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)


def _set_threads(n: int) -> None:
    if n > 0:
        import torch

        torch.set_num_threads(n)
