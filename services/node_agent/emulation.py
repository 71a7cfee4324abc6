"""Emulated heterogeneity for the local test bed (``--testbed-admin``): a
compute slow-down per node and delay / bandwidth / cut per outgoing link.

Nothing here runs in production. It wraps the production pieces instead of
living inside them: :class:`Emulator` is a compute clock (``compute.py``),
:class:`EmulatedLink` wraps a link's sender (``linkstream.py``), and
:class:`EmulatedNodeAgent` sends acks and probe replies back through the
emulated reverse link, so a sender's timings see both directions as a real
link would. Works without root or netem.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from edgesplit.rpc.errors import InvalidRequest, Unavailable, maps_errors
from edgesplit.v1 import node_agent_pb2 as na
from edgesplit.v1 import testbed_admin_pb2 as ta
from edgesplit.v1 import testbed_admin_pb2_grpc as ta_grpc
from services.node_agent.linkstream import AckFuture, LinkSender
from services.node_agent.servicer import AckWriter, NodeAgentServicer


@dataclass
class Conditions:
    compute_slowdown: float = 1.0
    link_delay_s: dict[str, float] = field(default_factory=dict)
    link_bandwidth_bps: dict[str, float] = field(default_factory=dict)
    link_down: dict[str, bool] = field(default_factory=dict)
    background_utilization: float = 0.0

    def to_proto(self) -> ta.Conditions:
        return ta.Conditions(compute_slowdown=self.compute_slowdown,
                             link_delay_s=self.link_delay_s,
                             link_bandwidth_bps=self.link_bandwidth_bps,
                             link_down=self.link_down,
                             background_utilization=self.background_utilization)


class Emulator:
    """The node's emulated conditions, and the compute clock they make."""

    def __init__(self, serial: bool = False) -> None:
        self.conditions = Conditions()
        self.serial = serial  # holds queue on one device (hold)
        self._link_free_at: dict[str, float] = {}  # when the emulated wire is idle again
        self.emulated_busy_s = 0.0  # compute time added by the slow-down, in total
        self._device_free_at = 0.0  # when the emulated device finishes the holds so far

    def update(self, new: ta.Conditions, replace: bool) -> Conditions:
        c = Conditions() if replace else self.conditions
        if new.compute_slowdown < 0 or new.background_utilization < 0 \
                or new.background_utilization > 1:
            raise ValueError("compute_slowdown >= 0 and background_utilization in [0, 1]")
        if any(v < 0 for v in (*new.link_delay_s.values(), *new.link_bandwidth_bps.values())):
            raise ValueError("link delay and bandwidth must be >= 0")
        if new.compute_slowdown or replace:
            c.compute_slowdown = new.compute_slowdown or 1.0
        if new.background_utilization or replace:
            c.background_utilization = new.background_utilization
        c.link_delay_s.update(new.link_delay_s)
        c.link_bandwidth_bps.update(new.link_bandwidth_bps)
        c.link_down.update(new.link_down)
        self.conditions = c
        return c

    # ---- the compute clock --------------------------------------------------------------
    def seconds(self, wall_s: float, cpu_s: float) -> float:
        """How long a compute step takes on the emulated device: k times the
        step's CPU time on the compute thread, for every slow-down k including 1.

        Not the wall time, which on a small machine shared by several agents is
        mostly waiting for a core; and the same measure at k = 1 as at k > 1, so
        a slow-down of k reads as k times the normal cost (with wall time as the
        baseline the ratio came out 2.4 for k = 3: the baseline carried the
        waiting, the slowed figure did not).
        """
        k = self.conditions.compute_slowdown
        return k * min(cpu_s, wall_s) if cpu_s > 0 else k * wall_s

    async def hold(self, extra_s: float) -> None:
        """Hold the step for the rest of the emulated compute time; sleeping
        (not spinning) models a slower device without stealing CPU from the
        other nodes. With ``serial`` holds queue behind each other: the
        emulated device is one device, busy until the holds before this one
        are done, so a slowed node serves k times fewer steps a second under
        load; without it (the default the built-in scenarios were tuned on)
        the holds of concurrent steps overlap."""
        self.emulated_busy_s += extra_s
        if not self.serial:
            await asyncio.sleep(extra_s)
            return
        now = time.monotonic()
        self._device_free_at = max(now, self._device_free_at) + extra_s
        await asyncio.sleep(self._device_free_at - now)

    # ---- links ------------------------------------------------------------------------
    def arrival(self, dst: str, nbytes: int) -> float:
        """When (monotonic) a message to ``dst`` sent now arrives: messages queue
        behind each other on the wire (bandwidth), then take the one-way delay."""
        c = self.conditions
        if c.link_down.get(dst):
            raise Unavailable(f"link to {dst} is down (emulated)")
        now = time.monotonic()
        bw = c.link_bandwidth_bps.get(dst, 0.0)
        delay = c.link_delay_s.get(dst, 0.0)
        if bw <= 0 and delay <= 0:
            return now
        start = max(now, self._link_free_at.get(dst, 0.0))
        done = start + (nbytes * 8.0 / bw if bw > 0 else 0.0)
        self._link_free_at[dst] = done
        return done + delay

    async def transmit(self, dst: str, nbytes: int) -> None:
        """Wait as a message of ``nbytes`` to ``dst`` would (link probes)."""
        wait = self.arrival(dst, nbytes) - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)

    def wrap_link(self, peer: str, inner: LinkSender) -> LinkSender:
        return EmulatedLink(self, peer, inner)


class EmulatedLink:
    """A link sender whose messages reach the wire after the emulated link's
    delay, in order and pipelined (the wire carries several at once)."""

    def __init__(self, emulator: Emulator, peer: str, inner: LinkSender,
                 depth: int = 64) -> None:
        self.emulator, self.peer, self.inner = emulator, peer, inner
        self._queue: asyncio.Queue[tuple[float, na.LinkMessage, int, AckFuture]] = \
            asyncio.Queue(depth)
        self._task: asyncio.Task[None] | None = None
        self._holding = False  # the delivery task has a message not yet sent

    async def send(self, msg: na.LinkMessage, nbytes: int | None = None) -> AckFuture:
        size = msg.ByteSize() if nbytes is None else nbytes
        due = self.emulator.arrival(self.peer, size)  # raises on a cut link
        if due <= time.monotonic() and self._queue.empty() and not self._holding:
            return await self.inner.send(msg, size)  # nothing emulated on this link now
        fut: AckFuture = asyncio.get_running_loop().create_future()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._deliver())
        await self._queue.put((due, msg, size, fut))
        return fut

    async def _deliver(self) -> None:
        while True:
            due, msg, size, fut = await self._queue.get()
            self._holding = True
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                inner = await self.inner.send(msg, size)
            except Exception as exc:  # noqa: BLE001 - the sender sees it on its future
                fut.set_exception(exc)
                continue
            finally:
                self._holding = not self._queue.empty()
            inner.add_done_callback(lambda f, out=fut: _chain(f, out))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self.inner.close()


def _chain(src: AckFuture, dst: AckFuture) -> None:
    if dst.done():
        return
    if src.exception() is not None:
        dst.set_exception(src.exception())  # type: ignore[arg-type]
    else:
        dst.set_result(src.result())


class _DelayedAcks(AckWriter):
    """Acks go back over the emulated link to their sender, pipelined."""

    def __init__(self, context: Any, emulator: Emulator) -> None:
        super().__init__(context)
        self.emulator = emulator
        self._queue: asyncio.Queue[tuple[float, na.LinkAck] | None] = asyncio.Queue(256)
        self._writing = False  # the writer task holds an ack (gRPC takes one write at a time)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def write(self, ack: na.LinkAck, src: str) -> None:
        due = self.emulator.arrival(src, ack.ByteSize()) if src else 0.0
        if due <= time.monotonic() and self._queue.empty() and not self._writing:
            await self.context.write(ack)  # nothing emulated on this link now
            return
        await self._queue.put((due, ack))

    async def _run(self) -> None:
        while (item := await self._queue.get()) is not None:
            self._writing = True
            due, ack = item
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            await self.context.write(ack)
            self._writing = self._queue.qsize() > 0

    async def drain(self) -> None:
        await self._queue.put(None)
        await self._task


class EmulatedNodeAgent(NodeAgentServicer):
    """The node agent with its replies sent back through the emulated links."""

    def __init__(self, emulator: Emulator, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.emulator = emulator

    def ack_writer(self, context: Any) -> AckWriter:
        return _DelayedAcks(context, self.emulator)

    async def Probe(self, request: na.ProbeRequest, context: Any) -> na.ProbeResponse:
        reply = await super().Probe(request, context)
        if request.src:
            await self.emulator.transmit(request.src, reply.ByteSize())
        return reply


class TestbedAdminServicer(ta_grpc.TestbedAdminServicer):
    """Emulated conditions; only served when the test bed enables it."""

    __test__ = False

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator

    @maps_errors
    async def SetConditions(self, request: ta.SetConditionsRequest,
                            context: Any) -> ta.SetConditionsResponse:
        try:
            now = self.emulator.update(request.conditions, request.replace).to_proto()
            return ta.SetConditionsResponse(conditions=now)
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from exc

    @maps_errors
    async def GetConditions(self, request: ta.GetConditionsRequest,
                            context: Any) -> ta.GetConditionsResponse:
        return ta.GetConditionsResponse(conditions=self.emulator.conditions.to_proto())
