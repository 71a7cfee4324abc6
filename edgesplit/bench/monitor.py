"""``edgesplit bench monitor``: can one monitor keep up with many nodes at 1 Hz?

Simulates ``--nodes`` agents (seeded), each with ``--layers`` measured layers
and ``--peers`` links, reporting once per simulated second for ``--cycles``
seconds; a few nodes fall silent for a while and a few reports arrive twice.
Per cycle it times, separately: the agents building their reports with the
core's ``build_report`` (CPU time), the monitor ingesting them (wall time) and
one ``snapshot`` (wall time, including the release of the previous snapshot,
as a service that republishes its state each cycle would pay it; the call
alone is ``snapshot_call_ms_p95``). Targets: ``state_build_ms_p95 <= 10`` and
``agent_cycle_cpu_ms <= 1``.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import time
from dataclasses import dataclass, field
from typing import Any

from edgesplit.core.inventory import NodeInventory
from edgesplit.core.monitor import Monitor, MonitorConfig
from edgesplit.core.reports import (
    AgentCounters,
    GpuSample,
    LinkObservation,
    LinkSource,
    NodeReport,
    RequestSample,
    ResourceSample,
    build_report,
)
from edgesplit.core.types import NodeId, NodeState, Trust

GIB = 1 << 30


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nodes", type=int, default=1000, help="simulated node agents")
    parser.add_argument("--cycles", type=int, default=30, help="simulated 1 s report cycles")
    parser.add_argument("--layers", type=int, default=32, help="layers each node measures")
    parser.add_argument("--peers", type=int, default=5, help="links each node reports")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulated reports")


@dataclass
class _Agent:
    """One simulated agent's local state: cumulative counters, like the real agent keeps."""

    node_id: NodeId
    peers: tuple[NodeId, ...]
    layer_s: float  # this node's seconds per token per layer
    has_gpu: bool
    prefill: dict[int, tuple[float, int]] = field(default_factory=dict)
    decode: dict[int, tuple[float, int]] = field(default_factory=dict)
    sent: dict[NodeId, int] = field(default_factory=dict)
    previous: AgentCounters | None = None
    seq: int = 0
    silent_until: float = -1.0  # simulated outage


def _p95(xs: list[float]) -> float:
    ordered = sorted(xs)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def _advance(agent: _Agent, rng: random.Random, layers: int) -> None:
    """What the segment runner and the frame sender add to the counters in one second."""
    for layer in range(layers):
        tokens = rng.randint(1, 20)
        s, n = agent.decode.get(layer, (0.0, 0))
        agent.decode[layer] = (s + tokens * agent.layer_s * rng.uniform(0.9, 1.1), n + tokens)
        if rng.random() < 0.2:
            ps, pn = agent.prefill.get(layer, (0.0, 0))
            agent.prefill[layer] = (ps + 64 * agent.layer_s * 0.3, pn + 64)
    hop = agent.peers[0]
    agent.sent[hop] = agent.sent.get(hop, 0) + rng.randint(10, 200) * 16384


def _observe(
    agent: _Agent, rng: random.Random
) -> tuple[ResourceSample, list[LinkObservation], list[RequestSample]]:
    gpu = GpuSample(rng.uniform(0.2, 0.9), 8 * GIB, 24 * GIB) if agent.has_gpu else None
    res = ResourceSample(rng.uniform(0.1, 0.9), 6 * GIB, 16 * GIB, gpu, rng.randint(0, 4), 2)
    links = [
        LinkObservation(p, rng.uniform(0.002, 0.05), rng.uniform(20e6, 1e9), LinkSource.PASSIVE)
        for p in agent.peers
    ]
    finished: list[RequestSample] = []
    if rng.random() < 0.3:
        steps = [rng.uniform(0.05, 0.3) for _ in range(16)]
        if rng.random() < 0.2:  # one stalled step: an SLA miss
            steps[rng.randrange(16)] = 0.6
        finished.append(RequestSample(rng.uniform(0.1, 1.0), tuple(steps)))
    return res, links, finished


def run(args: argparse.Namespace) -> dict[str, Any]:
    from edgesplit.cli.progress import progress

    rng = random.Random(args.seed)
    ids = [NodeId(f"n{i:05d}") for i in range(args.nodes)]
    agents = [
        _Agent(
            node_id=nid,
            peers=tuple(rng.sample([p for p in ids if p != nid], min(args.peers, len(ids) - 1))),
            layer_s=rng.uniform(0.0005, 0.01),
            has_gpu=rng.random() < 0.3,
        )
        for nid in ids
    ]
    monitor = Monitor(MonitorConfig(), ids, now=0.0)
    build_cpu_s = 0.0
    built = 0
    ingest_wall_s = 0.0
    ingested = 0
    snapshot_ms: list[float] = []  # release of the previous snapshot + the new one
    call_ms: list[float] = []  # the snapshot call alone
    states = [monitor.snapshot(0.0)]
    # Progress on stderr; closed below (an error ends the process, and the bar with it).
    bar = contextlib.ExitStack()
    advance = bar.enter_context(progress(f"monitor: {args.nodes} nodes", args.cycles))
    for cycle in range(1, args.cycles + 1):
        now = float(cycle)
        advance()
        reports: list[NodeReport] = []
        for agent in agents:
            if now < agent.silent_until:
                continue
            if rng.random() < 0.002:  # an outage of a few cycles: exercises liveness
                agent.silent_until = now + rng.randint(2, 6)
            _advance(agent, rng, args.layers)
            res, links, finished = _observe(agent, rng)
            t0 = time.process_time()
            current = AgentCounters(dict(agent.prefill), dict(agent.decode), dict(agent.sent))
            report = build_report(
                agent.node_id, agent.seq, now, res, current, agent.previous, finished, links
            )
            build_cpu_s += time.process_time() - t0
            built += 1
            agent.previous = current
            agent.seq += 1
            reports.append(report)
            if rng.random() < 0.01:  # a retried delivery: must be counted stale
                reports.append(report)
        t0 = time.perf_counter()
        for report in reports:
            monitor.ingest(report, now)
        ingest_wall_s += time.perf_counter() - t0
        ingested += len(reports)
        t0 = time.perf_counter()
        states.clear()  # frees the node views this cycle's reports replaced
        t1 = time.perf_counter()
        states.append(monitor.snapshot(now))
        t2 = time.perf_counter()
        snapshot_ms.append((t2 - t0) * 1e3)
        call_ms.append((t2 - t1) * 1e3)
    bar.close()
    state = states[-1]
    inventory = NodeInventory(
        tuple(NodeState(nid, Trust.TRUSTED, 16 * GIB, 1e12, address=f"{nid}:7000") for nid in ids)
    )
    cluster_ms: list[float] = []
    for _ in range(5):  # only built when re-planning: its median is the figure of interest
        t0 = time.perf_counter()
        cluster = state.to_cluster_state(inventory)
        cluster_ms.append((time.perf_counter() - t0) * 1e3)
    return {
        "nodes": args.nodes,
        "cycles": args.cycles,
        "layers": args.layers,
        "peers": args.peers,
        "reports": ingested,
        "reports_per_s": round(ingested / ingest_wall_s, 1) if ingest_wall_s else None,
        "state_build_ms_p95": round(_p95(snapshot_ms), 3),
        "state_build_ms_max": round(max(snapshot_ms), 3),
        "snapshot_call_ms_p95": round(_p95(call_ms), 3),
        "agent_cycle_cpu_ms": round(build_cpu_s / built * 1e3, 4) if built else None,
        "to_cluster_state_ms_p50": round(sorted(cluster_ms)[len(cluster_ms) // 2], 3),
        "cluster_links": len(cluster.links),
        "stale_reports": state.reports_stale,
        "dead_at_end": sum(not n.alive for n in state.nodes.values()),
        "sla_hit_rate": None if state.sla_hit_rate is None else round(state.sla_hit_rate, 3),
    }
