"""One simulated run: the data plane, the agents' reports into the real monitor
reducer, the orchestrator's decisions (``decide.Decider``) and the
broadcaster's two-phase rollout, in simulated time.

Modes (as the test bed's): ``adaptive`` re-plans while it serves;
``static`` rolls out the same initial plan and never changes it;
``single-device`` runs the whole model on the entry and never changes.

Timeline: reports start at t=0, the first plan is made at ``warmup_s`` from
what the monitor has heard, and load and the scenario's events run from
then for ``duration_s`` (event times count from the start of the load, as on
the test bed). Requests still in flight at the end finish and count.
"""

from __future__ import annotations

import gc
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from edgesplit.core.control import ControlConfig
from edgesplit.core.control_flags import control_config
from edgesplit.core.monitor import Monitor
from edgesplit.core.reports import RequestSample
from edgesplit.core.types import NodeId, Plan, Route, Trust
from edgesplit.sim.agents import Agent, Agents
from edgesplit.sim.dataplane import DataPlane, DataPlaneConfig, Finished, Session
from edgesplit.sim.decide import Decider
from edgesplit.sim.region import Region
from edgesplit.sim.setup import SimSetup
from edgesplit.sim.traces import load_trace
from edgesplit.sim.world import Clock, LayerTable, SimLink, SimNode

MODES = ("static", "single-device", "adaptive")


@dataclass
class Reconfiguration:
    decided_at: float
    committed_at: float | None
    triggers: tuple[str, ...]
    action: str
    epoch: int
    outcome: str = "committed"

    @property
    def duration_s(self) -> float | None:
        return None if self.committed_at is None else self.committed_at - self.decided_at


@dataclass
class RunLog:
    """What a run leaves behind for the metrics and the plots."""

    records: list[Finished] = field(default_factory=list)
    stalls: list[float] = field(default_factory=list)
    reconfigurations: list[Reconfiguration] = field(default_factory=list)
    # (region, epoch) -> (from when, plan)
    plans: dict[tuple[int, int], tuple[float, Plan]] = field(default_factory=dict)
    util_samples: list[tuple[float, float]] = field(default_factory=list)  # (t, mean plan util)
    events: list[tuple[float, str]] = field(default_factory=list)
    privacy_high_refused: int = 0


def decode_flops_per_s(node: SimNode, table: LayerTable, context: int) -> float:
    """Declared speed for the inventory: the FLOP/s at which the node decodes one
    token alone (memory-bound on GPUs), the figure the planner's cost model wants."""
    p = table.profile
    seconds = node.hw.decode_token_seconds(p, context) * node.slowdown
    return sum(c.flops_per_token for c in p.layers) / seconds if seconds > 0 else 0.0


@contextmanager
def _few_collections() -> Iterator[None]:
    """Python's cyclic collector, told that a run allocates by the million: it
    scans young objects every 700 allocations, so most of a run's short-lived
    values (frames, legs, reports) were scanned, some of them several times,
    before they died; a sixth of a large run's CPU. From 50 000 most die
    unscanned, and what was there before the run is left out (``gc.freeze``).
    Cycles are still collected; the settings are restored afterwards."""
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(max(threshold[0], 50_000), *threshold[1:])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


class Simulation:
    def __init__(self, setup: SimSetup, mode: str, seed: int = 0,
                 duration_s: float | None = None,
                 regions: list[tuple[tuple[NodeId, ...], tuple[NodeId, ...]]] | None = None
                 ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.setup, self.mode, self.seed = setup, mode, seed
        sc, st = setup.scenario, setup.settings
        self.settings = st
        self.duration_s = sc.duration_s if duration_s is None else duration_s
        self.clock = Clock()
        self.table = LayerTable(setup.profile)
        self.log = RunLog()
        self.nodes: dict[NodeId, SimNode] = {}
        for n in setup.nodes:
            node = SimNode(NodeId(n.id), n.hw, Trust.TRUSTED if n.trusted else Trust.UNTRUSTED,
                           n.memory_bytes, st.max_batch, st.prefill_chunk, background=n.background,
                           slowdown=n.slowdown, background_slows=n.hw.name != "testbed-cpu")
            self.nodes[node.node_id] = node
        self.links: dict[tuple[NodeId, NodeId], SimLink] = {}
        for lk in setup.links:
            trace = load_trace(lk.trace) if lk.trace else None
            for a, b in ((lk.a, lk.b), (lk.b, lk.a)):
                self.links[(NodeId(a), NodeId(b))] = SimLink(
                    NodeId(a), NodeId(b), lk.bandwidth_bps, 2 * lk.delay_s, trace,
                    lk.trace_offset_s, extra_rtt_s=2 * lk.delay_s if trace else 0.0)
        self.entries = tuple(NodeId(e) for e in setup.entries)
        self.dp = DataPlane(self.clock, self.nodes, self.links, self.table,
                            DataPlaneConfig(max_in_flight=sc.load.max_in_flight,
                                            failure_detect_s=st.failure_detect_s,
                                            stall_timeout_s=st.stall_timeout_s,
                                            retained_epochs=st.retained_epochs,
                                            stall_step_s=st.incident_step_s,
                                            sla_step_s=sc.sla_step_s, express=st.express),
                            self._finished, gate=self._gate, private=self._private)
        context = sc.load.prompt_tokens + sc.load.new_tokens // 2
        groups = regions or [(self.entries, tuple(self.nodes))]
        config = self._decider_config()
        self.regions = [Region(self, k, tuple(e), tuple(n), config, context)
                        for k, (e, n) in enumerate(groups)]
        self.region_of = {n: r for r in self.regions for n in r.inventory.ids}
        self.rng_probe = random.Random(f"{seed}/probe")
        self.agents = Agents(self.nodes, self.links, self.table, self.region_of,
                             st.report_interval_s, sc.sla_step_s, self.rng_probe.random, self.dp)
        self.finished_at_entry = {e: self.agents.agents[e].finished for e in self.entries}
        self.rate = sc.load.requests_per_s
        self._arrival_gen = 0
        self.rng_arrivals = random.Random(f"{seed}/arrivals")
        self.rng_privacy = random.Random(f"{seed}/privacy")
        self.privacy_burst = 0
        self.t0 = st.warmup_s
        self.reports = 0

    def _decider_config(self) -> ControlConfig:
        """The step's settings from the scenario's orchestrator flags, by the
        orchestrator's own rule (``core.control_flags``), with the workload and
        cool-down the test bed passes beside them; a flag that is no setting
        of the step is refused rather than dropped."""
        sc = self.setup.scenario
        return control_config({
            "cooldown_s": self.settings.cooldown_s, **self.setup.orchestrator,
            "prompt_tokens": sc.load.prompt_tokens, "new_tokens": sc.load.new_tokens,
            "requests_per_s": sc.load.requests_per_s or sc.load.concurrency / 5.0})

    # ---- the run ------------------------------------------------------------------------
    def run(self) -> RunLog:
        st = self.settings
        n = len(self.nodes)
        for k, agent in enumerate(self.agents.agents.values()):
            self.clock.at(st.report_interval_s * (k + 1) / n, self._report, agent)
        self.clock.at(self.t0, self._initial)
        end = self.t0 + self.duration_s
        with _few_collections():
            self.clock.run(end)
            self._arrival_gen += 1  # no new arrivals; what is in flight finishes
            self.clock.run(end + st.stall_timeout_s + 120.0)
        self.log.stalls = list(self.dp.stalls)
        return self.log

    def _initial(self) -> None:
        now = self.clock.now
        for region in self.regions:
            region.initial()
        self.log.events.append((0.0, "initial plan"))
        for ev in self.setup.scenario.events:
            self.clock.at(self.t0 + ev.at, self._event, ev)
        self.dp.barriers = sorted(self.t0 + ev.at for ev in self.setup.scenario.events)
        load = self.setup.scenario.load
        if load.requests_per_s > 0:
            self._schedule_arrival()
        else:
            for i in range(load.concurrency):
                self.clock.at(now + i * 0.01, self._closed_client, i)

    # ---- what tests and reports read ---------------------------------------------------
    @property
    def decider(self) -> Decider:
        """The first region's orchestrator (the only one, unless regions were given)."""
        return self.regions[0].decider

    @property
    def monitor(self) -> Monitor:
        return self.regions[0].monitor

    @property
    def planner_calls(self) -> int:
        return sum(r.decider.planner_calls for r in self.regions)

    def set_planner_clock(self, clock: Callable[[], float]) -> None:
        for r in self.regions:
            r.decider.clock = clock

    @property
    def planner_wall_s(self) -> float:
        return sum(r.decider.planner_wall_s for r in self.regions)

    # ---- load -------------------------------------------------------------------------------
    def _schedule_arrival(self) -> None:
        if self.rate <= 0:
            return
        gen = self._arrival_gen
        self.clock.at(self.clock.now + self.rng_arrivals.expovariate(self.rate),
                      self._arrive, gen)

    def _arrive(self, gen: int) -> None:
        if gen != self._arrival_gen:
            return
        entry = self.entries[self.rng_arrivals.randrange(len(self.entries))]
        self._request(entry)
        self._schedule_arrival()

    def _closed_client(self, i: int) -> None:
        if self.clock.now >= self.t0 + self.duration_s:
            return
        s = self._request(self.entries[i % len(self.entries)], client=i)
        if s is None:
            self.clock.at(self.clock.now + self.setup.scenario.load.think_s, self._closed_client, i)

    def _request(self, entry: NodeId, client: int | None = None) -> Session | None:
        load = self.setup.scenario.load
        high = self.rng_privacy.random() < load.privacy_high_fraction
        if self.privacy_burst > 0:
            self.privacy_burst -= 1
            high = True
        s = self.dp.admit(entry, high, load.prompt_tokens, load.new_tokens)
        if s is not None:
            s.client = client
            self.dp.start(s)
        return s

    def _finished(self, s: Session, rec: Finished) -> None:
        self.log.records.append(rec)
        if rec.ok and s.entry in self.finished_at_entry:
            self.finished_at_entry[s.entry].append(RequestSample(rec.ttft_s, rec.steps_s))
        if s.client is not None:
            self.clock.at(self.clock.now + self.setup.scenario.load.think_s,
                          self._closed_client, s.client)

    def _gate(self, s: Session, route: Route) -> bool:
        return self.region_of[s.entry].gate(s, route)

    def _private(self, route: Route) -> bool:
        return self.region_of[route.entry].private(route)

    # ---- reports -> monitor --------------------------------------------------------------------
    def _report(self, a: Agent) -> None:
        now = self.clock.now
        self.clock.at(now + self.settings.report_interval_s, self._report, a)
        out = self.agents.report(a, now)
        region = a.region
        if out is None or region is None:
            return
        report, util = out
        region.monitor.ingest(report, now)
        self.reports += 1
        if now >= self.t0 and a.node.node_id in region.plan_nodes:
            self.log.util_samples.append((now - self.t0, util))

    # ---- scenario events ------------------------------------------------------------------------
    def _event(self, ev: Any) -> None:
        a = ev.args
        self.log.events.append((self.clock.now - self.t0, ev.describe()))
        if ev.kind == "link":
            for key in ((a["a"], a["b"]), (a["b"], a["a"])):
                link = self.links.get((NodeId(key[0]), NodeId(key[1])))
                if link is None:
                    continue
                bw, rtt = link.figures(self.clock.now)
                if "scale" in a:
                    link.scale = float(a["scale"])
                    continue
                link.trace = None
                link.bandwidth_bps = float(a.get("bandwidth_mbps", bw / 1e6)) * 1e6
                link.rtt_s = 2 * float(a.get("delay_ms", rtt * 500)) / 1000.0
        elif ev.kind == "node":
            node = self.nodes[NodeId(a["node"])]
            if a.get("slowdown"):
                floor = self.settings.testbed_stretch if node.hw.name == "testbed-cpu" else 1.0
                node.slowdown = max(float(a["slowdown"]), floor)
            node.background = float(a.get("background_utilization", 0) or 0)
        elif ev.kind == "kill":
            node_id = NodeId(a["node"])
            self.dp.kill(node_id)
            region = self.region_of.get(node_id)
            if region is not None:  # its report stream breaks with it, as an agent's does
                region.monitor.stream_lost(node_id, self.clock.now)
                # The monitor publishes the verdict one cycle later (MonitorHub.lost).
                self.clock.at(self.clock.now + 1.05 * self.settings.report_interval_s,
                              region.dead, node_id)
        elif ev.kind == "restart":
            self.dp.restart(NodeId(a["node"]))
        elif ev.kind == "privacy_burst":
            self.privacy_burst += int(a.get("count", 1))
        elif ev.kind == "load":
            self.rate = float(a.get("requests_per_s", self.rate))
            self._arrival_gen += 1
            self._schedule_arrival()
