"""The node agents' reports in simulated time: what each node's agent would send
the monitor every cycle, built with the agent's own ``build_report``.

A report carries the node's utilisation since the last one, its memory, queue
and sessions, the per-layer counters of the passes it ran, the bytes it sent
per next hop, the requests that finished at it (an entry) and a probe of every
link it has. A large run is mostly idle nodes reporting, so what a report of
an idle node would rebuild unchanged (its resource sample, its counters) is
kept from the last one: frozen values, the same report either way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from edgesplit.core.reports import (
    AgentCounters,
    GpuSample,
    NodeReport,
    RequestSample,
    ResourceSample,
    build_report,
)
from edgesplit.core.types import NodeId
from edgesplit.sim import express
from edgesplit.sim.world import LayerTable, Peer, SimLink, SimNode, probe

if TYPE_CHECKING:
    from edgesplit.sim.dataplane import DataPlane
    from edgesplit.sim.region import Region


@dataclass(slots=True, eq=False)
class Agent:
    """One node's agent: what it keeps from one report to the next."""

    node: SimNode
    peers: list[Peer]  # its links, in link order (the probe order)
    region: Region | None
    gpu: bool  # reports a GPU sample (else CPU utilisation)
    finished: list[RequestSample] = field(default_factory=list)  # at this entry, since the last
    last_at: float | None = None  # simulated time of the last report
    prev: AgentCounters | None = None  # the counters the last report was built from
    busy_at: float | None = None  # node.busy_s then
    # The last resource sample and what it was made of (utilisation, shard
    # bytes, queue, sessions): an idle node's is the same every cycle.
    resources: ResourceSample | None = None
    resources_of: tuple[float, int, int, int] | None = None
    # (bytes_sent, current, base) counters of a report without passes.
    idle: tuple[object, AgentCounters, AgentCounters] | None = None
    shards: tuple[int, int] = (-1, 0)  # (len(node.shards), their weight bytes)


class Agents:
    def __init__(self, nodes: dict[NodeId, SimNode], links: dict[tuple[NodeId, NodeId], SimLink],
                 table: LayerTable, region_of: dict[NodeId, Region], report_interval_s: float,
                 sla_step_s: float, rand: Callable[[], float], dp: DataPlane) -> None:
        peers: dict[NodeId, list[Peer]] = {}
        for (a, b), link in links.items():
            peers.setdefault(a, []).append((b, link, nodes[b]))
        self.agents = {
            n: Agent(node, peers.get(n, []), region_of.get(n),
                     not node.hw.name.startswith(("cpu", "testbed")))
            for n, node in nodes.items()}
        self.table = table
        self.interval = report_interval_s
        self.sla_step_s = sla_step_s
        self.rand = rand
        self.dp = dp

    def report(self, a: Agent, now: float) -> tuple[NodeReport, float] | None:
        """The report ``a``'s node sends at ``now`` and its utilisation; None if it is down."""
        node = a.node
        if not node.alive:
            return None
        if node.express is not None:
            express.catch_up(self.dp, node.express.chunk, now)
        dt = now - (now - self.interval if a.last_at is None else a.last_at)
        a.last_at = now
        bg = node.background
        util = min(1.0, bg + (1.0 - bg) * node.busy_since_report / max(dt, 1e-9))
        node.busy_since_report = 0.0
        used = self._shard_bytes(a)
        of = (util, used, len(node.queue), node.users)
        resources = a.resources
        if resources is None or of != a.resources_of:
            gpu = GpuSample(util, used, node.memory_bytes) if a.gpu else None
            resources = a.resources = ResourceSample(
                cpu_utilization=util if gpu is None else 0.05, memory_used_bytes=used,
                memory_total_bytes=node.memory_bytes, gpu=gpu, queue_depth=of[2],
                active_sessions=of[3])
            a.resources_of = of
        prev = a.prev
        sent = node.bytes_sent
        if prev is not None and prev.bytes_sent == sent:
            sent = prev.bytes_sent  # unchanged: share the copy
        else:
            sent = dict(sent)
        if prev is not None and a.busy_at == node.busy_s:
            # No pass since the last report: its layer counters are the last
            # report's, so the report carries no layer figures; building it from
            # the bytes alone gives the same report without expanding the layers.
            idle = a.idle
            if idle is None or idle[0] is not sent or idle[2].bytes_sent is not prev.bytes_sent:
                idle = a.idle = (sent, AgentCounters(bytes_sent=sent),
                                 AgentCounters(bytes_sent=prev.bytes_sent))
            cur, base = idle[1], idle[2]
            counters = prev if sent is prev.bytes_sent else AgentCounters(
                prev.prefill, prev.decode, sent)
        else:
            prefill, decode = node.layer_counters()
            cur = counters = AgentCounters(prefill=prefill, decode=decode, bytes_sent=sent)
            base = prev
        a.busy_at = node.busy_s
        finished = a.finished
        samples = tuple(finished) if finished else ()
        if finished:
            finished.clear()
        report = build_report(node.node_id, node.seq, now, resources, cur, base, samples,
                              probe(a.peers, now, self.rand),
                              incarnation=node.incarnation, sla_step_budget_s=self.sla_step_s)
        node.seq += 1
        a.prev = counters
        return report, util

    def _shard_bytes(self, a: Agent) -> int:
        """Weight bytes of the layers on the node's disk (shards are only added)."""
        shards = a.node.shards
        if a.shards[0] != len(shards):
            layers, n = self.table.profile.layers, self.table.profile.num_layers
            a.shards = (len(shards), sum(layers[i].weight_bytes for i in shards if i < n))
        return a.shards[1]
