"""The entry moves a late step to a newer epoch the moment that epoch commits
(real agents, fake runners): a request in flight on a node that died waits
for the failover's commit, not for the entry's next SLA tick as well."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

from services.node_agent import metrics as m
from tests.service.cluster import Cluster
from tests.service.test_links import PROMPT, fake_factory, fake_reference, shards

__all__ = ["shards"]  # the fixture, shared with test_links

SLA_S = 2.0  # the entry's --sla-step-s: its ticks for a late step come this far apart


async def test_a_late_step_moves_when_a_newer_epoch_commits(shards: Path,
                                                            tmp_path: Path) -> None:
    gate = {2: threading.Event()}  # node-1's segment [2, 4) of epoch 1 hangs
    c = await Cluster.start(3, shards, tmp_path, make_runner=fake_factory(gate),
                            sla_step_s=SLA_S, step_timeout_s=60)
    try:
        await c.apply(c.plan(["node-0", "node-1", "node-2"]))
        moves = m.MIGRATED._value.get()
        request = asyncio.create_task(c.generate(PROMPT, 6))
        # The prefill sits on node-1 past the entry's first SLA tick, with no
        # newer epoch yet: nothing to move to.
        await asyncio.sleep(SLA_S * 1.25)
        assert not request.done()
        await c.apply(c.plan(["node-0", "node-2"]))  # the failover: node-1 left out
        committed = time.perf_counter()
        got = await asyncio.wait_for(request, 30)
        moved_after = time.perf_counter() - committed
        want = fake_reference([2, 4], 6)
        assert got and got == want[:len(got)]  # the same tokens (up to EOS), from the new route
        assert m.MIGRATED._value.get() == moves + 1
        # At the commit, not at the next tick (0.75 x SLA_S after it).
        assert moved_after < SLA_S / 4, moved_after
    finally:
        gate[2].set()
        await c.stop()
