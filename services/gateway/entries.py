"""Which entry node a request goes to: the monitor's alive nodes (or the
configured addresses), minus the ones that just failed, least busy first.

The monitor is read every ``state_poll_s``; when it cannot be reached the last
state it gave stays in force, so a monitor restart does not stop the gateway.
An entry whose call failed with UNAVAILABLE is passed over for ``bench_s``
(a short ban, as Petals does with failing peers) even while the monitor, which
notices deaths only after missed reports, still lists it as alive.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from edgesplit.rpc.transport import Transport
from edgesplit.v1 import common_pb2, inference_pb2_grpc, monitor_pb2, monitor_pb2_grpc
from services.gateway.auth import Client
from services.gateway.config import GatewayConfig

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Entry:
    node_id: str
    address: str
    alive: bool = True
    trusted: bool = True


class EntryPool:
    def __init__(self, config: GatewayConfig, transport: Transport,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.transport = transport
        self.clock = clock
        self.preferred = list(config.entries)
        self.entries: dict[str, Entry] = {
            n: Entry(n, a) for n, a in config.static_entries().items()
            if not self.preferred or n in self.preferred}
        self.monitor_ok: bool | None = None  # None: not asked yet (or no monitor)
        self._benched: dict[str, float] = {}
        self._busy: dict[str, int] = {}
        self._channels: dict[str, grpc.aio.Channel] = {}

    # ---- state -------------------------------------------------------------------
    def update(self, env: monitor_pb2.EnvironmentState) -> None:
        """Adopt the monitor's view: every node it knows (or the configured
        entries among them), alive or not, at the address it last reported."""
        seen: dict[str, Entry] = {}
        for view in env.nodes:
            s = view.state
            if self.preferred and s.node_id not in self.preferred:
                continue
            address = s.address or self.config.static_entries().get(s.node_id, "")
            if address:
                seen[s.node_id] = Entry(s.node_id, address, s.alive,
                                        s.trust == common_pb2.TRUST_TRUSTED)
        self.entries = seen

    async def refresh(self) -> None:
        if not self.config.monitor:
            return
        stub = monitor_pb2_grpc.MonitorStub(self._channel(self.config.monitor, monitor=True))
        try:
            env = (await stub.GetState(monitor_pb2.GetStateRequest(),
                                       timeout=self.config.rpc_timeout_s)).state
        except grpc.aio.AioRpcError as exc:
            if self.monitor_ok is not False:
                log.warning("monitor %s: %s; keeping the last state", self.config.monitor,
                            exc.code().name)
            self.monitor_ok = False
            return
        self.monitor_ok = True
        self.update(env)

    async def run(self) -> None:
        """Refresh until cancelled."""
        while True:
            await self.refresh()
            await asyncio.sleep(self.config.state_poll_s)

    # ---- choice ------------------------------------------------------------------
    def healthy(self) -> list[Entry]:
        now = self.clock()
        return [e for e in self.entries.values()
                if e.alive and self._benched.get(e.node_id, 0.0) <= now]

    def candidates(self, client: Client, exclude: set[str]) -> list[Entry]:
        """Healthy entries the client may use, least busy first, then by preference."""
        order = {n: i for i, n in enumerate(self.preferred)}
        usable = [e for e in self.healthy()
                  if client.may_use(e.node_id, e.trusted) and e.node_id not in exclude]
        return sorted(usable, key=lambda e: (self._busy.get(e.node_id, 0),
                                             order.get(e.node_id, len(order)), e.node_id))

    def bench(self, node_id: str) -> None:
        self._benched[node_id] = self.clock() + self.config.bench_s

    def started(self, node_id: str) -> None:
        self._busy[node_id] = self._busy.get(node_id, 0) + 1

    def finished(self, node_id: str) -> None:
        self._busy[node_id] -= 1

    # ---- channels ----------------------------------------------------------------
    def _channel(self, address: str, monitor: bool = False) -> grpc.aio.Channel:
        ch = self._channels.get(address)
        if ch is None:
            # GetState is idempotent, Generate is not: only the monitor's calls retry.
            retry = ["edgesplit.v1.Monitor/GetState"] if monitor else []
            ch = self.transport.aio_channel(address, retry=retry, reconnect_cap_s=2.0)
            self._channels[address] = ch
        return ch

    def stub(self, entry: Entry) -> inference_pb2_grpc.InferenceStub:
        return inference_pb2_grpc.InferenceStub(self._channel(entry.address))

    async def close(self) -> None:
        for ch in self._channels.values():
            await ch.close()
        self._channels.clear()
