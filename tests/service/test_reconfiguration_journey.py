"""One reconfiguration, end to end in-process: node reports into a real monitor,
the orchestrator's control loop reading it, a real split reviser and a real
broadcaster rolling the plan out to real node agents (fake runners), up to a
committed epoch — and the plan is a core value all the way, turned into a
message only where it crosses an RPC (or enters the store).

Conversions are counted by wrapping ``edgesplit.rpc.convert``'s plan
functions and noting the module that called each one.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from edgesplit.core.control import ControlHistory, Outcome
from edgesplit.core.inventory import NodeInventory
from edgesplit.core.monitor import MonitorConfig as ReducerConfig
from edgesplit.core.types import (
    CostBreakdown,
    LayerCost,
    ModelProfile,
    NodeId,
    NodeState,
    Plan,
    Trust,
)
from edgesplit.rpc import convert as cv
from edgesplit.rpc.server import create_server
from edgesplit.v1 import monitor_pb2 as mpb
from edgesplit.v1 import monitor_pb2_grpc as mpb_grpc
from services.monitor.__main__ import registrations as monitor_registrations
from services.monitor.config import MonitorConfig
from services.monitor.hub import MonitorHub
from services.orchestrator.config import OrchestratorConfig
from services.orchestrator.loop import ControlLoop
from services.orchestrator.store import Store
from services.split_reviser.__main__ import registrations as reviser_registrations
from services.split_reviser.config import SplitReviserConfig
from tests.service.broadcaster_cluster import LAYERS, NODES, TRANSPORT, Cluster, cluster

__all__ = ["cluster"]  # the fixture, re-exported for pytest

ENTRY = NODES[0]
FAST, SLOW = 1e9, 1e6  # link bandwidth, bit/s (the trigger is at 50 Mbit/s)
ORCHESTRATOR = ("services.orchestrator.",)


@dataclass
class Spy:
    """Plan conversions by (direction, calling module)."""

    calls: Counter[tuple[str, str]]

    def by_orchestrator(self) -> Counter[tuple[str, str]]:
        return Counter({k: v for k, v in self.calls.items() if k[1].startswith(ORCHESTRATOR)})


def counting(spy: Spy, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapped(*args: Any, **kw: Any) -> Any:
        spy.calls[(name, sys._getframe(1).f_globals["__name__"])] += 1
        return fn(*args, **kw)
    return wrapped


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Spy:
    s = Spy(Counter())
    for name in ("plan_to_proto", "plan_from_proto"):
        monkeypatch.setattr(cv, name, counting(s, name, getattr(cv, name)))
    return s


@dataclass
class Stack:
    monitor: str
    loop: ControlLoop
    seq: int = 0
    streams: dict[str, Any] = field(default_factory=dict)  # node -> its open Report stream
    channel: Any = None

    def observation(self, node: str, slow: frozenset[tuple[str, str]] = frozenset()
                    ) -> mpb.ReportRequest:
        self.seq += 1
        links = [mpb.LinkObservation(peer=p, source=mpb.LINK_SOURCE_PROBE,
                                     rtt=cv.duration(0.3 if (node, p) in slow else 0.001),
                                     bandwidth_bps=SLOW if (node, p) in slow else FAST)
                 for p in NODES if p != node]
        return mpb.ReportRequest(
            node_id=node, seq=self.seq, sent_at=cv.timestamp(time.time()),
            cpu_utilization=0.1, memory_used_bytes=1 << 30, memory_total_bytes=16 << 30,
            links=links)

    async def report(self, slow: frozenset[tuple[str, str]] = frozenset()) -> None:
        """One report per node on its Report stream, kept open as agents keep
        theirs (a stream that ends marks its node lost): every link measured,
        fast unless named in ``slow``."""
        if self.channel is None:
            self.channel = TRANSPORT.aio_channel(self.monitor)
        for node in NODES:
            call = self.streams.get(node)
            if call is None:
                call = self.streams[node] = mpb_grpc.MonitorStub(self.channel).Report(
                    timeout=300)
            await call.write(self.observation(node, slow))
            ack = await call.read()
            assert ack.accepted, ack.reason

    async def close(self) -> None:
        if self.channel is not None:
            await self.channel.close()


@pytest.fixture
async def stack(cluster: Cluster, tmp_path: Path) -> AsyncIterator[Stack]:
    # The entry is slow, the other two fast: a plan must cross a link.
    speed = {ENTRY: 1e9, NODES[1]: 1e12, NODES[2]: 1e12}
    inventory = NodeInventory(tuple(
        NodeState(NodeId(n), Trust.TRUSTED, 16 << 30, speed[n], address=cluster.addresses[n])
        for n in NODES))
    layer = LayerCost(weight_bytes=1 << 20, flops_per_token=1e9, kv_bytes_per_token=256)
    profile = ModelProfile("fake", (layer,) * LAYERS, layer, layer, 512, cluster.digest)
    mconf = MonitorConfig(insecure=True)
    hub = MonitorHub(ReducerConfig(link_alpha=1.0), inventory, profile=profile)
    mserver = await create_server(mconf, monitor_registrations(mconf, hub))
    rconf = SplitReviserConfig(insecure=True)
    rserver = await create_server(rconf, reviser_registrations(rconf))
    baddr = f"127.0.0.1:{cluster.servers[0].port}"  # the cluster's first server
    oconf = OrchestratorConfig(
        insecure=True,
        monitor=f"127.0.0.1:{mserver.port}", split_reviser=f"127.0.0.1:{rserver.port}",
        broadcaster=baddr, db=str(tmp_path / "orchestrator.sqlite"), entries=(ENTRY,))
    st = Stack(oconf.monitor, ControlLoop(oconf, Store(oconf.db)))
    publishing = asyncio.get_running_loop().create_task(hub.run())  # for WatchState
    yield st
    publishing.cancel()
    await st.close()
    await st.loop.close()
    st.loop.store.close()
    for server in (mserver, rserver):
        await server.server.stop(None)


def remote_hops(plan: Plan) -> frozenset[tuple[str, str]]:
    """Both directions of every link between the entry and the nodes the plan uses."""
    far = {n for n in plan.nodes if n != ENTRY}
    return frozenset({(ENTRY, n) for n in far} | {(n, ENTRY) for n in far})


async def test_a_degraded_link_reconfigures_with_plans_as_core_values(
        stack: Stack, spy: Spy) -> None:
    loop = stack.loop
    await stack.report()
    first = await loop.tick()
    assert first is not None and first.outcome is Outcome.COMMITTED, first
    assert isinstance(loop.plan, Plan) and isinstance(loop.cost, CostBreakdown)
    assert isinstance(loop.history, ControlHistory)
    before = loop.plan
    assert before.nodes - {ENTRY}, f"the plan should leave the slow entry: {before}"

    # A quiet interval: E(t) is read and judged, no plan is converted at all.
    spy.calls.clear()
    await stack.report()
    assert await loop.tick() is None
    assert spy.by_orchestrator() == Counter()

    # The monitor hears of a slow link on the route; one interval later a new
    # epoch is committed without that link.
    await stack.report(slow=remote_hops(before))
    spy.calls.clear()
    revises, applies = count_calls(loop)
    d = await loop.tick(now=time.time() + loop.config.cooldown_s + 1)
    assert d is not None and d.outcome is Outcome.COMMITTED and "bandwidth" in d.triggers, d
    assert d.new_epoch == before.epoch + 1 and d.old_epoch == before.epoch
    after = loop.plan
    assert isinstance(after, Plan) and after.epoch == d.new_epoch
    assert not remote_hops(after) & remote_hops(before)
    assert isinstance(loop.cost, CostBreakdown) and loop.cost.total < d.old_cost.total

    # Conversions: only in the orchestrator's boundary modules, one per crossing:
    # the current plan into each Revise, each plan out of a Revise answer, the
    # adopted plan into Apply and into the store.
    mine = spy.by_orchestrator()
    assert {m for _, m in mine} <= {"services.orchestrator.convert",
                                    "services.orchestrator.store"}, mine
    assert mine[("plan_to_proto", "services.orchestrator.convert")] == revises[0] + applies[0]
    assert mine[("plan_from_proto", "services.orchestrator.convert")] == revises[0]
    assert mine[("plan_to_proto", "services.orchestrator.store")] == 1
    assert applies[0] == 1 and revises[0] in (1, 2)  # placement, maybe a re-split

    # The store holds what was committed; a restarted loop resumes it as a core value.
    resumed = Store(loop.config.db).resume()
    assert resumed.plan == after and resumed.reconfigurations == {"initial": 1, "bandwidth": 1}


def count_calls(loop: ControlLoop) -> tuple[list[int], list[int]]:
    """Wrap the loop's Revise and Apply stubs; the lists fill as they are called."""
    revises, applies = [0], [0]

    def wrap(stub: Any, name: str, counter: list[int]) -> None:
        rpc = getattr(stub, name)

        def call(*args: Any, **kw: Any) -> Any:
            counter[0] += 1
            return rpc(*args, **kw)
        setattr(stub, name, call)

    wrap(loop.reviser, "Revise", revises)
    wrap(loop.broadcaster, "Apply", applies)
    return revises, applies


async def test_an_aborted_epoch_is_never_offered_again_after_a_restart(
        stack: Stack, cluster: Cluster) -> None:
    loop = stack.loop
    await stack.report()
    first = await loop.tick()
    assert first is not None and first.outcome is Outcome.COMMITTED and first.new_epoch == 1
    cluster.faults.fail.update(NODES)  # every node fails to load its segment: abort
    await stack.report(slow=remote_hops(loop.plan))  # type: ignore[arg-type]
    aborted = await loop.tick(now=time.time() + loop.config.cooldown_s + 1)
    assert aborted is not None and aborted.outcome is Outcome.ABORTED, aborted
    assert loop.history.last_epoch == 2  # spent at the broadcaster and the agents

    await loop.close()
    loop.store.close()
    again = stack.loop = ControlLoop(loop.config, Store(loop.config.db))
    assert again.plan is not None and again.plan.epoch == 1
    assert again.history.last_epoch == 2
    cluster.faults.fail.clear()
    await stack.report(slow=remote_hops(again.plan))
    d = await again.tick(now=time.time() + loop.config.cooldown_s + 1)
    assert d is not None and d.outcome is Outcome.COMMITTED and d.new_epoch == 3, d


async def test_the_running_loop_fails_over_when_the_monitor_says_so(stack: Stack) -> None:
    """A node of the plan dies (its report stream breaks): the running loop
    decides at the monitor's verdict (one 1 s report cycle later), not at the
    end of its interval (60 s here)."""
    await stack.report()
    first = await stack.loop.tick()
    assert first is not None and first.outcome is Outcome.COMMITTED, first
    config = stack.loop.config.model_copy(update={"interval_s": 60.0})
    await stack.loop.close()
    stack.loop.store.close()
    loop = stack.loop = ControlLoop(config, Store(config.db))
    before = loop.plan
    assert before is not None
    victim = min(before.nodes - {ENTRY})
    running = asyncio.get_running_loop().create_task(loop.run())
    try:
        await asyncio.sleep(0.5)  # the run's first decision (a quiet one) is made
        assert loop.plan == before
        await stack.report()
        stack.streams[victim].cancel()  # the victim's process is gone
        killed = time.monotonic()
        while loop.plan == before:
            assert time.monotonic() - killed < 10, "no failover 10 s after the kill"
            await asyncio.sleep(0.05)
        assert victim not in loop.plan.nodes
        assert "failover" in loop.last_decision.triggers  # type: ignore[union-attr]
    finally:
        running.cancel()
