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

import random
from dataclasses import dataclass, field
from typing import Any

from edgesplit.core.inventory import NodeInventory
from edgesplit.core.monitor import Monitor, MonitorConfig
from edgesplit.core.reports import (
    AgentCounters,
    GpuSample,
    LinkObservation,
    LinkSource,
    RequestSample,
    ResourceSample,
    build_report,
)
from edgesplit.core.triggers import TriggerConfig, untrusted_sensitive_nodes
from edgesplit.core.types import (
    Epoch,
    NodeId,
    NodeState,
    Plan,
    Route,
    Segment,
    Trust,
    Weights,
)
from edgesplit.sim.dataplane import DataPlane, DataPlaneConfig, Finished, Session
from edgesplit.sim.decide import Decider, DeciderConfig, Proposal
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
    plans: dict[int, tuple[float, Plan]] = field(default_factory=dict)  # epoch -> (from, plan)
    util_samples: list[tuple[float, float]] = field(default_factory=list)  # (t, mean plan util)
    events: list[tuple[float, str]] = field(default_factory=list)
    privacy_high_refused: int = 0


def decode_flops_per_s(node: SimNode, table: LayerTable, context: int) -> float:
    """Declared speed for the inventory: the FLOP/s at which the node decodes one
    token alone (memory-bound on GPUs), the figure the planner's cost model wants."""
    p = table.profile
    seconds = node.hw.decode_token_seconds(p, context) * node.slowdown
    return sum(c.flops_per_token for c in p.layers) / seconds if seconds > 0 else 0.0


class Simulation:
    def __init__(self, setup: SimSetup, mode: str, seed: int = 0,
                 duration_s: float | None = None) -> None:
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
                           slowdown=n.slowdown)
            self.nodes[node.node_id] = node
        self.links: dict[tuple[NodeId, NodeId], SimLink] = {}
        for lk in setup.links:
            trace = load_trace(lk.trace) if lk.trace else None
            for a, b in ((lk.a, lk.b), (lk.b, lk.a)):
                self.links[(NodeId(a), NodeId(b))] = SimLink(
                    NodeId(a), NodeId(b), lk.bandwidth_bps, 2 * lk.delay_s, trace,
                    lk.trace_offset_s, extra_rtt_s=2 * lk.delay_s if trace else 0.0)
        self.entries = tuple(NodeId(e) for e in setup.entries)
        context = sc.load.prompt_tokens + sc.load.new_tokens // 2
        self.inventory = NodeInventory(tuple(
            NodeState(node_id=n.node_id, trust=n.trust, memory_bytes=n.memory_bytes,
                      flops_per_s=decode_flops_per_s(n, self.table, context),
                      trusted_by=self._trusted_by(n))
            for n in self.nodes.values()))
        self.monitor = Monitor(MonitorConfig(report_interval_s=st.report_interval_s,
                                             link_alpha=st.link_alpha,
                                             sla_step_budget_s=sc.sla_step_s),
                               enrolled=list(self.nodes), now=0.0)
        self.decider = Decider(self._decider_config(), self.inventory, setup.profile,
                               self.entries)
        self.dp = DataPlane(self.clock, self.nodes, self.links, self.table,
                            DataPlaneConfig(max_in_flight=sc.load.max_in_flight,
                                            failure_detect_s=st.failure_detect_s,
                                            stall_timeout_s=st.stall_timeout_s,
                                            drain_s=st.drain_s,
                                            stall_step_s=st.incident_step_s),
                            self._finished, gate=self._gate)
        self.plan: Plan | None = None
        self.rolling = False
        self.waiting_private: list[Session] = []
        self.finished_at_entry: dict[NodeId, list[RequestSample]] = {e: [] for e in self.entries}
        self.prev_counters: dict[NodeId, AgentCounters] = {}
        self.last_report: dict[NodeId, float] = {}
        self.rate = sc.load.requests_per_s
        self._arrival_gen = 0
        self.rng_arrivals = random.Random(f"{seed}/arrivals")
        self.rng_privacy = random.Random(f"{seed}/privacy")
        self.rng_probe = random.Random(f"{seed}/probe")
        self.privacy_burst = 0
        self.t0 = st.warmup_s
        self.reports = 0

    def _trusted_by(self, n: SimNode) -> tuple[NodeId, ...]:
        """A trusted entry device is trusted by itself; other trusted nodes by every entry."""
        if n.trust is not Trust.TRUSTED:
            return ()
        return (n.node_id,) if n.node_id in self.entries else self.entries

    def _decider_config(self) -> DeciderConfig:
        sc, o = self.setup.scenario, self.setup.orchestrator
        st = self.settings
        trig = TriggerConfig(latency_ewma_s=float(o.get("latency_trigger_s", 0.150)),
                             max_utilization=float(o.get("utilization_trigger", 0.85)),
                             min_link_bandwidth_bps=float(o.get("bandwidth_trigger_bps", 50e6)),
                             cooldown_s=float(o.get("cooldown_s", st.cooldown_s)),
                             privacy_depth=int(o.get("privacy_depth", 1)))
        return DeciderConfig(
            triggers=trig, margin=float(o.get("margin", 0.05)),
            weights=Weights(float(o.get("alpha", 1.0)), float(o.get("beta", 0.1)),
                            float(o.get("gamma", 10.0))),
            prompt_tokens=sc.load.prompt_tokens, new_tokens=sc.load.new_tokens,
            requests_per_s=sc.load.requests_per_s or sc.load.concurrency / 5.0,
            privacy_depth=trig.privacy_depth)

    # ---- the run ------------------------------------------------------------------------
    def run(self) -> RunLog:
        st = self.settings
        n = len(self.nodes)
        for k, node_id in enumerate(self.nodes):
            self.clock.at(st.report_interval_s * (k + 1) / n, self._report, node_id)
        self.clock.at(self.t0, self._initial)
        end = self.t0 + self.duration_s
        self.clock.run(end)
        self._arrival_gen += 1  # no new arrivals; what is in flight finishes
        self.clock.run(end + st.stall_timeout_s + 120.0)
        self.log.stalls = list(self.dp.stalls)
        return self.log

    def _initial(self) -> None:
        now = self.clock.now
        if self.mode == "single-device":
            routes = tuple(Route(e, (Segment(e, 0, self.table.profile.num_layers, True, True),))
                           for e in self.entries)
            plan: Plan | None = Plan(Epoch(1), self.table.profile.digest, routes)
        else:
            p = self.decider.initial(self.monitor.snapshot(now), now)
            plan = None if p is None else p.plan
        if plan is None:
            raise RuntimeError("no initial plan: the cluster cannot hold the model")
        self._install(plan)
        self.decider.last_epoch = plan.epoch
        self.log.events.append((0.0, f"initial plan, epoch {plan.epoch}"))
        for ev in self.setup.scenario.events:
            self.clock.at(self.t0 + ev.at, self._event, ev)
        load = self.setup.scenario.load
        if load.requests_per_s > 0:
            self._schedule_arrival()
        else:
            for i in range(load.concurrency):
                self.clock.at(now + i * 0.01, self._closed_client, i)
        if self.mode == "adaptive":
            self.clock.at(now + self.settings.interval_s, self._tick)

    def _install(self, plan: Plan) -> None:
        self.plan = plan
        self.log.plans[plan.epoch] = (self.clock.now - self.t0, plan)
        for r in plan.routes:
            for s in r.segments:
                self.nodes[s.node].shards.update(range(s.start, s.end))
        self.dp.commit(plan)

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

    # ---- privacy (the entry's check, then the orchestrator's ensure_private_route) ------------
    def _private(self, route: Route) -> bool:
        return not untrusted_sensitive_nodes(route, self.inventory.index,
                                             self.decider.config.privacy_depth)

    def _gate(self, s: Session, route: Route) -> bool:
        """May ``s`` (re)start on ``route`` now? False: this took it over."""
        if not s.privacy_high or self._private(route):
            return True
        if self.mode != "adaptive":
            self.log.privacy_high_refused += 1
            self.dp.fail(s, "FAILED_PRECONDITION: privacy=high: route crosses untrusted nodes")
            return False
        self.waiting_private.append(s)
        if not self.rolling:
            now = self.clock.now
            calls = self.decider.planner_calls
            r = self.decider.private_route(self.monitor.snapshot(now), self.plan, now)
            if isinstance(r, Proposal):
                self._rollout(r, now, self.decider.planner_calls - calls)
            else:
                self._release_private(ok=r is True)
        return False

    def _release_private(self, ok: bool) -> None:
        waiting, self.waiting_private = self.waiting_private, []
        for s in waiting:
            if ok:
                self.dp.start(s)
            else:
                self.dp.fail(s, "FAILED_PRECONDITION: no private route")

    # ---- reports -> monitor --------------------------------------------------------------------
    def _report(self, node_id: NodeId) -> None:
        st = self.settings
        now = self.clock.now
        self.clock.at(now + st.report_interval_s, self._report, node_id)
        node = self.nodes[node_id]
        if not node.alive:
            return
        dt = now - self.last_report.get(node_id, now - st.report_interval_s)
        self.last_report[node_id] = now
        bg = node.background
        util = min(1.0, bg + (1.0 - bg) * node.busy_since_report / max(dt, 1e-9))
        node.busy_since_report = 0.0
        used = sum(self.table.profile.layers[i].weight_bytes for i in node.shards
                   if i < self.table.profile.num_layers)
        gpu = None if node.hw.name.startswith(("cpu", "testbed")) else GpuSample(
            util, used, node.memory_bytes)
        active = sum(1 for s in self.dp.active.values()
                     if s.route is not None and node_id in s.route.nodes)
        resources = ResourceSample(cpu_utilization=util if gpu is None else 0.05,
                                   memory_used_bytes=used, memory_total_bytes=node.memory_bytes,
                                   gpu=gpu, queue_depth=len(node.queue), active_sessions=active)
        prefill, decode = node.layer_counters()
        counters = AgentCounters(prefill=prefill, decode=decode, bytes_sent=dict(node.bytes_sent))
        finished = self.finished_at_entry.get(node_id)
        samples = tuple(finished) if finished else ()
        if finished:
            finished.clear()
        report = build_report(node_id, node.seq, now, resources, counters,
                              self.prev_counters.get(node_id), samples,
                              self._observe_links(node_id, now),
                              incarnation=node.incarnation,
                              sla_step_budget_s=self.setup.scenario.sla_step_s)
        node.seq += 1
        self.prev_counters[node_id] = counters
        self.monitor.ingest(report, now)
        self.reports += 1
        if self.plan is not None and node_id in self.plan.nodes and now >= self.t0:
            self.log.util_samples.append((now - self.t0, util))

    def _observe_links(self, node_id: NodeId, now: float) -> list[LinkObservation]:
        """Probes to every peer this node has a link to (a probe in an outage times
        out: RTT only)."""
        out = []
        for (a, b), link in self._out_links(node_id):
            if not self.nodes[b].alive:
                continue
            bw, rtt = link.figures(now)
            jitter = 1.0 + 0.02 * (self.rng_probe.random() - 0.5)
            out.append(LinkObservation(b, rtt * jitter, bw if bw > 0 else None, LinkSource.PROBE))
        return out

    def _out_links(self, node_id: NodeId) -> list[tuple[tuple[NodeId, NodeId], SimLink]]:
        cache = getattr(self, "_out_cache", None)
        if cache is None:
            cache = {}
            for key, link in self.links.items():
                cache.setdefault(key[0], []).append((key, link))
            self._out_cache = cache
        return cache.get(node_id, [])

    # ---- the orchestrator ---------------------------------------------------------------------
    def _tick(self) -> None:
        now = self.clock.now
        self.clock.at(now + self.settings.interval_s, self._tick)
        if self.rolling or self.plan is None:
            return
        calls = self.decider.planner_calls
        p = self.decider.cycle(self.monitor.snapshot(now), self.plan, now)
        if p is not None:
            self._rollout(p, now, self.decider.planner_calls - calls)

    def _rollout(self, p: Proposal, decided_at: float, planner_calls: int) -> None:
        """Prepare (every node fetches the shards it lacks and loads its new
        layers beside the old ones), then commit; abort if a node died meanwhile."""
        st = self.settings
        self.rolling = True
        prof = self.table.profile
        serving: dict[NodeId, set[int]] = {}
        if self.plan is not None:
            for r in self.plan.routes:
                for s in r.segments:
                    serving.setdefault(s.node, set()).update(range(s.start, s.end))
        prepare = 0.0
        for r in p.plan.routes:
            for s in r.segments:
                node = self.nodes[s.node]
                new = set(range(s.start, s.end)) - serving.get(s.node, set())
                fetch = sum(prof.layers[i].weight_bytes for i in new - node.shards)
                load = sum(prof.layers[i].weight_bytes for i in new)
                prepare = max(prepare, fetch * 8 / (st.registry_mbps * 1e6)
                              + load / (st.load_gbps * 1e9))
        ready = self.clock.now + planner_calls * st.planner_s + st.control_rtt_s + prepare
        self.clock.at(ready, self._prepared, p, decided_at)

    def _prepared(self, p: Proposal, decided_at: float) -> None:
        dead = sorted(n for n in p.plan.nodes if not self.nodes[n].alive)
        if dead:
            self.decider.aborted(p, self.clock.now)
            self._end_rollout(p, decided_at, None, "aborted")
            return
        self.clock.at(self.clock.now + self.settings.control_rtt_s, self._commit, p, decided_at)

    def _commit(self, p: Proposal, decided_at: float) -> None:
        self._install(p.plan)
        self.decider.committed(p, decided_at)
        self._end_rollout(p, decided_at, self.clock.now, "committed")

    def _end_rollout(self, p: Proposal, decided_at: float, at: float | None,
                     outcome: str) -> None:
        self.rolling = False
        self.log.reconfigurations.append(Reconfiguration(
            decided_at - self.t0, None if at is None else at - self.t0, p.triggers, p.action,
            p.plan.epoch, outcome))
        if self.waiting_private:
            private = self.plan is not None and all(self._private(r) for r in self.plan.routes)
            if private or outcome != "committed":
                self._release_private(ok=private)

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
                node.slowdown = float(a["slowdown"])
            node.background = float(a.get("background_utilization", 0) or 0)
        elif ev.kind == "kill":
            self.dp.kill(NodeId(a["node"]))
        elif ev.kind == "restart":
            self.dp.restart(NodeId(a["node"]))
        elif ev.kind == "privacy_burst":
            self.privacy_burst += int(a.get("count", 1))
        elif ev.kind == "load":
            self.rate = float(a.get("requests_per_s", self.rate))
            self._arrival_gen += 1
            self._schedule_arrival()
