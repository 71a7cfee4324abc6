"""Closed-loop load for a scenario run: ``N`` clients, each sending its next
request ``think_s`` after its last one ends, with ``N`` changed at run time
by the scenario's ``load`` events (a surge: 2 clients, then 8, then 24).

Clients are numbered; client ``i`` always draws its prompts from
``random.Random(i)``, so every mode faces the same requests in the same
order per client. Lowering ``N`` lets the clients above it finish their
request in flight and stop.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable


class ClientPool:
    def __init__(self, one: Callable[[random.Random], Awaitable[None]], think_s: float,
                 stop: asyncio.Event) -> None:
        self._one, self._think, self._stop = one, think_s, stop
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self.target = 0
        self.peak = 0

    def resize(self, clients: int) -> None:
        """Run ``clients`` clients from now on."""
        self.target = max(0, clients)
        self.peak = max(self.peak, self.target)
        for i in range(self.target):
            if i not in self._tasks or self._tasks[i].done():
                self._tasks[i] = asyncio.create_task(self._client(i))

    async def _client(self, i: int) -> None:
        rng = random.Random(i)
        while not self._stop.is_set() and i < self.target:
            await self._one(rng)
            if self._think > 0:
                try:
                    await asyncio.wait_for(self._stop.wait(), self._think)
                except TimeoutError:
                    pass

    async def join(self) -> None:
        """Wait for every client's request in flight once ``stop`` is set."""
        if self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)
