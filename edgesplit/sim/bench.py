"""``edgesplit sim bench``: how fast the simulator runs a large deployment.

The cluster: ``entries`` cells, each one trusted entry device (Jetson AGX
Orin) and its share of the other nodes (MEC GPUs of mixed classes and CPU
servers) reached over the 5G radio, the MEC nodes of a cell meshed over metro
links and linked to the next cell. Each cell has its own control plane
(monitor, orchestrator, broadcaster), as a deployment per MEC site would,
rather than one planner solving 100 routes over all 1000 nodes every call.
Llama-2-7B, open-loop load at every entry, and over the hour a MEC node
failure and an overload in a tenth of the cells. The cells run as
:data:`PARTS` independent simulations on the machine's cores (``partition``).
Prints simulated seconds per wall second (and per CPU second, all parts
together), events per second and planner calls per second (with their wall
time), as JSON.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from array import array
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from typing import Any

from edgesplit.core.types import NodeId
from edgesplit.scenario.spec import Event, LinkSpec, LoadSpec, NodeSpec, Scenario
from edgesplit.sim.metrics import met, ms, pct, summarize
from edgesplit.sim.setup import build_setup
from edgesplit.sim.simulation import Simulation

# The seed's 50 Mbit/s bandwidth trigger sits inside a 5G uplink's normal range
# (30-120 Mbit/s, edgesplit.sim.traces.PROFILES): it would re-plan whenever the
# radio wanders low. A 7B decode frame is 8 KB (3 ms at 20 Mbit/s), so the
# trigger here fires on congestion dips (8-40 Mbit/s), not on the radio's
# ordinary ups and downs; the built-in mec-* scenarios set the same.
RADIO_ORCHESTRATOR = {"bandwidth_trigger_bps": 20e6}

MEC_CLASSES = ("rtx-4090", "a6000", "rtx-3060", "a100", "cpu-server", "jetson-agx-orin")


Cells = list[tuple[tuple[NodeId, ...], tuple[NodeId, ...]]]


def bench_scenario(nodes: int = 1000, entries: int = 100, duration_s: float = 3600.0,
                   requests_per_s: float = 0.1, report_interval_s: float = 5.0
                   ) -> tuple[Scenario, Cells]:
    """The scenario, and its cells as (entries, nodes) of one control plane each."""
    if entries < 1 or nodes < 2 * entries:
        raise ValueError("need at least one entry and one other node per entry")
    per_cell = (nodes - entries) // entries
    specs, links, events = [], [], []
    cells: list[list[str]] = []
    k = 0
    for c in range(entries):
        entry = f"dev-{c}"
        specs.append(NodeSpec(entry, trust="trusted", entry=True, hardware="jetson-agx-orin"))
        size = per_cell + (1 if c < (nodes - entries) % entries else 0)
        cell = []
        for _ in range(size):
            name = f"mec-{k}"
            specs.append(NodeSpec(name, hardware=MEC_CLASSES[k % len(MEC_CLASSES)]))
            cell.append(name)
            k += 1
        cells.append(cell)
        for i, m in enumerate(cell):
            links.append(LinkSpec(entry, m, trace=f"5g-radio-{1 + (c + i) % 3}",
                                  trace_offset_s=float((37 * c + 11 * i) % 3600)))
            for m2 in cell[i + 1:]:
                links.append(LinkSpec(m, m2, trace=f"metro-{1 + (c + i) % 3}",
                                      trace_offset_s=float((13 * c) % 3600)))
    for c, cell in enumerate(cells):
        nxt = cells[(c + 1) % entries]
        if nxt is not cell:
            for m, m2 in zip(cell[:2], nxt[:2], strict=False):
                links.append(LinkSpec(m, m2, delay_ms=2.0, bandwidth_mbps=5000.0))
    for c in range(0, entries, 10):
        victim = cells[c][0]
        at = 300.0 + (c * 37) % max(1.0, duration_s - 600.0)
        events.append(Event(at, "kill", {"node": victim}))
        events.append(Event(at + 300.0, "restart", {"node": victim}))
        busy = cells[c][1 % len(cells[c])]
        events.append(Event(at + 100.0, "node", {"node": busy, "background_utilization": 0.9}))
        events.append(Event(at + 500.0, "node", {"node": busy, "background_utilization": 0.0}))
    regions: Cells = [((NodeId(f"dev-{c}"),), (NodeId(f"dev-{c}"), *map(NodeId, cell)))
                      for c, cell in enumerate(cells)]
    return Scenario(
        name=f"bench-{nodes}n-{entries}e", description="simulator scale benchmark",
        duration_s=duration_s, sla_step_s=0.4, model={}, nodes=tuple(specs),
        links=tuple(links), default_link=LinkSpec("*", "*", 1.0, 1000.0),
        load=LoadSpec(requests_per_s=requests_per_s * entries, max_in_flight=16,
                      prompt_tokens=128, new_tokens=64),
        events=tuple(sorted(events, key=lambda e: e.at)),
        # Decisions every report cycle (the loop's monitoring interval: between
        # reports E(t) does not change), and the bandwidth trigger set for 5G.
        orchestrator=dict(RADIO_ORCHESTRATOR),
        sim={"model": "llama-2-7b", "report_interval_s": report_interval_s,
             "interval_s": report_interval_s, "mesh": False}), regions


# The cells run as this many independent simulations, spread over the
# machine's cores. Fixed, so the result does not depend on the machine: each
# part has its own seeds (derived from the run's), its cells' nodes, events and
# share of the load, and the links among them. Cells share nothing but the
# metro links from a cell's first two MEC nodes to the next cell's, which no
# route uses (each control plane plans over its own cell): those that join two
# parts are left out (in the 1000-node run 20 of them, 40 of 9400 one-way
# links).
PARTS = 10


def partition(sc: Scenario, cells: Cells, parts: int = PARTS) -> list[tuple[Scenario, Cells]]:
    """``parts`` scenarios of consecutive cells each, with their nodes, the links
    among those, their events and their entries' share of the load."""
    if not 1 <= parts <= len(cells):
        raise ValueError(f"parts must be between 1 and the {len(cells)} cells")
    out = []
    for p in range(parts):
        mine = cells[p * len(cells) // parts:(p + 1) * len(cells) // parts]
        ids = {n for _, members in mine for n in members}
        out.append((replace(
            sc, name=f"{sc.name}-part{p}",
            nodes=tuple(n for n in sc.nodes if n.id in ids),
            links=tuple(lk for lk in sc.links if lk.a in ids and lk.b in ids),
            events=tuple(e for e in sc.events if e.args["node"] in ids),
            load=replace(sc.load, requests_per_s=sc.load.requests_per_s * len(mine)
                         / len(cells))), mine))
    return out


def _run_part(job: tuple[Scenario, Cells, int]) -> dict[str, Any]:
    """One part's run (in a worker process): its counts, and its step latencies
    and SLA verdicts for the percentiles and hit rate over the whole run."""
    sc, cells, seed = job
    cpu = time.process_time()
    sim = Simulation(build_setup(sc), "adaptive", seed, regions=cells)
    sim.set_planner_clock(time.perf_counter)  # wall time of planner calls, for this report only
    log = sim.run()
    summary = summarize(sim, log)
    return {
        "steps": sim.dp.step_latencies.tobytes(),
        "hits": sum(met(r.ok, r.steps_s, sc.sla_step_s) for r in log.records),
        "requests": summary["requests"], "requests_failed": summary["requests_failed"],
        "reconfigurations": summary["reconfigurations"], "links": len(sim.links),
        "model": sim.table.profile.name, "simulated_s": sim.clock.now,
        "events": sim.clock.events, "control_planes": len(sim.regions),
        "reports": sim.reports, "planner_calls": sim.planner_calls,
        "planner_wall_s": sim.planner_wall_s, "cpu_s": time.process_time() - cpu,
    }


def bench(nodes: int = 1000, entries: int = 100, duration_s: float = 3600.0, seed: int = 0,
          report_interval_s: float = 5.0, parts: int = PARTS,
          workers: int | None = None) -> dict[str, Any]:
    """The run's figures; ``workers`` processes (default: one per core) share
    the ``parts``, which changes the wall time only, never the result."""
    sc, cells = bench_scenario(nodes, entries, duration_s, report_interval_s=report_interval_s)
    jobs = [(part, part_cells, seed * parts + p)
            for p, (part, part_cells) in enumerate(partition(sc, cells, min(parts, entries)))]
    workers = max(1, min(len(jobs), workers or os.cpu_count() or 1))
    start = time.perf_counter()
    if workers == 1:
        results = [_run_part(job) for job in jobs]
    else:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            results = list(pool.map(_run_part, jobs))
    wall = time.perf_counter() - start
    steps = array("d")
    for r in results:
        steps.frombytes(r["steps"])
    every = list(steps)
    total = {k: sum(r[k] for r in results) for k in (
        "requests", "requests_failed", "hits", "reconfigurations", "links", "events",
        "control_planes", "reports", "planner_calls", "planner_wall_s", "cpu_s")}
    simulated = max(r["simulated_s"] for r in results)
    cpu, calls = total["cpu_s"], total["planner_calls"]
    return {
        "nodes": nodes, "entries": entries, "links": total["links"],
        "model": results[0]["model"], "report_interval_s": report_interval_s,
        "parts": len(jobs), "workers": workers,
        "simulated_s": round(simulated, 1), "wall_s": round(wall, 2),
        "simulated_s_per_wall_s": round(simulated / wall, 1),
        # CPU seconds too (all parts): on a shared machine the wall time also
        # counts other processes' turns on the cores.
        "cpu_s": round(cpu, 2), "simulated_s_per_cpu_s": round(simulated / cpu, 1),
        "events": total["events"], "events_per_wall_s": round(total["events"] / wall),
        "control_planes": total["control_planes"],
        "reports": total["reports"], "planner_calls": calls,
        "planner_wall_s": round(total["planner_wall_s"], 2),
        "planner_calls_per_wall_s": round(calls / wall, 2),
        "planner_ms_mean": round(1000 * total["planner_wall_s"] / max(1, calls), 2),
        "requests": total["requests"], "requests_failed": total["requests_failed"],
        "p50_ms": ms(pct(every, 0.5)), "p95_ms": ms(pct(every, 0.95)),
        "sla_hit_rate": round(total["hits"] / max(1, total["requests"]), 4),
        "reconfigurations": total["reconfigurations"],
    }
