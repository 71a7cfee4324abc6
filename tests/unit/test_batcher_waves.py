"""The entry's waves merge: groups of sessions that travel its ring apart
become one when one of them waits for the other (core/waves.py, the batcher's
parking). Driven through the real Batcher with a compute the test finishes by
hand, so each batch's outcome is the test's to choose."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from edgesplit.core.batching import BatchLimits
from edgesplit.core.types import NodeId, Part, Route, Segment
from services.node_agent.batcher import Batcher, Closed, Send, Step, Work

ROUTE = Route(NodeId("entry"), (
    Segment(NodeId("entry"), 0, 2, frozenset({Part.EMBED})),
    Segment(NodeId("edge"), 2, 4),
    Segment(NodeId("entry"), 4, 4, frozenset({Part.HEAD}))))
HEAD = len(ROUTE.segments) - 1
ES = SimpleNamespace(epoch=1)


class ManualCompute:
    """Takes one batch at a time; the test ends it with the outcomes it picks."""

    def __init__(self) -> None:
        self.queued = 0
        self.sizes: list[int] = []  # steps of each batch handed over
        self._done: Any = None

    def start(self, work: Any, done: Any) -> None:
        self.sizes.append(self.queued)
        self._done = done

    def finish(self, outcomes: list[Any]) -> None:
        done, self._done = self._done, None
        done((outcomes, []), None)


def step(session: str, hop: int, n: int) -> Work:
    return Work(es=ES, route=ROUTE, hop=hop, step=Step(session, n, 64 + n), tokens=1,
                load=lambda runner: None)


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


class Ring:
    """An entry's batcher with one wave kept on its ring."""

    def __init__(self) -> None:
        self.compute = ManualCompute()
        self.b = Batcher("entry", self.compute, BatchLimits(ring_waves=1), 1 << 20,  # type: ignore[arg-type]
                         list, lambda outcomes: None)

    async def depart(self, sessions: list[str], n: int) -> None:
        """The sessions' step ``n`` runs hop 0 in one batch and leaves: one wave."""
        works = [step(s, 0, n) for s in sessions]
        self.b.put(works)
        await settle()
        self.compute.finish([Send(ES, "edge", works, [])])  # type: ignore[arg-type]

    async def back(self, sessions: list[str], n: int) -> None:
        """Their step ``n`` closes at the head."""
        works = [step(s, HEAD, n) for s in sessions]
        self.b.put(works)
        await settle()
        self.compute.finish([Closed(w, 7) for w in works])


async def test_a_parked_group_and_the_wave_it_waits_for_leave_as_one() -> None:
    ring = Ring()
    queued = ring.compute.sizes
    await ring.depart(["a1", "a2"], 1)
    await ring.depart(["b1", "b2"], 1)
    await ring.depart(["c1"], 1)
    await asyncio.sleep(0.05)  # a round trip, so the entry knows how long one takes
    await ring.back(["a1", "a2"], 1)
    # A is back while B and C are out and one wave is kept: A's next steps
    # wait for the next wave back.
    ring.b.put([step("a1", 0, 2), step("a2", 0, 2)])
    await settle()
    assert len(queued) == 4  # three departures and A's head batch; A's steps parked
    await ring.back(["b1", "b2"], 1)
    # B is back: the parked A leaves with B's next steps, which must not park
    # in turn, though C is still out (else the groups would only take turns,
    # never merge).
    ring.b.put([step("b1", 0, 2), step("b2", 0, 2)])
    await settle()
    assert queued[-1] == 4, queued
    merged = [step(s, 0, 2) for s in ("a1", "a2", "b1", "b2")]
    ring.compute.finish([Send(ES, "edge", merged, [])])  # type: ignore[arg-type]
    # C comes back while the merged wave is out: it waits for that wave ...
    await ring.back(["c1"], 1)
    ring.b.put([step("c1", 0, 2)])
    await settle()
    await ring.back(["a1", "a2", "b1", "b2"], 2)
    ring.b.put([step(s, 0, 3) for s in ("a1", "a2", "b1", "b2")])
    await settle()
    assert queued[-1] == 5, queued  # ... and all five travel as one wave from here

