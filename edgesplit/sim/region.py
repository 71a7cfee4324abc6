"""One control plane in simulated time: the monitor (the real reducer), the
orchestrator (``decide.Decider``) and the broadcaster's two-phase rollout,
over the nodes and entries it owns.

A simulation has one region unless it is told otherwise; ``sim bench`` gives
each cell of a large deployment its own, as one would deploy a control plane
per MEC site rather than one planner over a thousand nodes.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from edgesplit.core.control import ControlConfig
from edgesplit.core.inventory import NodeInventory
from edgesplit.core.monitor import Monitor, MonitorConfig
from edgesplit.core.route import route_from_cuts
from edgesplit.core.triggers import untrusted_sensitive_nodes
from edgesplit.core.types import Epoch, NodeId, NodeState, Plan, Route, Trust
from edgesplit.sim.dataplane import Session
from edgesplit.sim.decide import Decider, Proposal

if TYPE_CHECKING:
    from edgesplit.sim.simulation import Simulation


class Region:
    def __init__(self, sim: Simulation, index: int, entries: tuple[NodeId, ...],
                 node_ids: tuple[NodeId, ...], config: ControlConfig, context: int) -> None:
        from edgesplit.sim.simulation import decode_flops_per_s

        self.sim, self.index, self.entries = sim, index, entries
        st, sc = sim.settings, sim.setup.scenario
        nodes = [sim.nodes[n] for n in node_ids]

        def trusted_by(n: NodeId, trust: Trust) -> tuple[NodeId, ...]:
            # A trusted entry device is trusted by itself; other trusted nodes by every entry.
            if trust is not Trust.TRUSTED:
                return ()
            return (n,) if n in entries else entries

        self.inventory = NodeInventory(tuple(
            NodeState(node_id=n.node_id, trust=n.trust, memory_bytes=n.memory_bytes,
                      flops_per_s=decode_flops_per_s(n, sim.table, context),
                      trusted_by=trusted_by(n.node_id, n.trust))
            for n in nodes))
        self.monitor = Monitor(MonitorConfig(report_interval_s=st.report_interval_s,
                                             link_alpha=st.link_alpha,
                                             sla_step_budget_s=sc.sla_step_s),
                               enrolled=list(node_ids), now=0.0)
        self.decider = Decider(replace(config, entries=entries), self.inventory,
                               sim.setup.profile, entries)
        self.plan: Plan | None = None
        self.plan_nodes: frozenset[NodeId] = frozenset()
        self.rolling = False
        self.waiting_private: list[Session] = []

    # ---- plans ----------------------------------------------------------------------------
    def initial(self) -> None:
        sim, now = self.sim, self.sim.clock.now
        if sim.mode == "single-device":
            L = sim.table.profile.num_layers
            routes = tuple(route_from_cuts(e, [e], [], L) for e in self.entries)
            plan: Plan | None = Plan(Epoch(1), sim.table.profile.digest, routes)
        else:
            p = self.decider.cycle(self.monitor.snapshot(now), None, now)
            plan = None if p is None else p.plan
            if p is not None:
                self.decider.committed(p, now)  # deployed before the load starts
        if plan is None:
            if now - sim.t0 > 60.0:
                raise RuntimeError(f"region {self.index}: no first plan in a minute "
                                   "(the cluster cannot hold the model?)")
            sim.clock.at(now + sim.settings.interval_s, self.initial)  # agents still starting
            return
        self.install(plan)
        if sim.mode == "adaptive":
            sim.clock.at(now + sim.settings.interval_s, self.tick)

    def install(self, plan: Plan) -> None:
        sim = self.sim
        self.plan = plan
        self.plan_nodes = frozenset(plan.nodes)
        sim.log.plans[(self.index, plan.epoch)] = (sim.clock.now - sim.t0, plan)
        for r in plan.routes:
            for s in r.segments:
                sim.nodes[s.node].shards.update(range(s.start, s.end))
        sim.dp.commit(plan)

    def tick(self) -> None:
        sim = self.sim
        sim.clock.at(sim.clock.now + sim.settings.interval_s, self.tick)
        self.decide()

    def dead(self, node_id: NodeId) -> None:
        """The monitor published ``node_id`` dead: a node of the plan makes the
        orchestrator decide at once (``ControlLoop.watch_deaths``), not at its
        next interval."""
        if node_id in self.plan_nodes and self.sim.mode == "adaptive":
            self.decide()

    def decide(self) -> None:
        sim = self.sim
        now = sim.clock.now
        if self.rolling or self.plan is None:
            return
        calls = self.decider.planner_calls
        p = self.decider.cycle(self.monitor.snapshot(now), self.plan, now)
        if p is not None:
            self.rollout(p, now, self.decider.planner_calls - calls)

    # ---- privacy (the entry's check, then the orchestrator's ensure_private_route) --------
    def private(self, route: Route) -> bool:
        return not untrusted_sensitive_nodes(route, self.inventory.index,
                                             self.decider.privacy_depth)

    def gate(self, s: Session, route: Route) -> bool:
        """May ``s`` (re)start on ``route`` now? False: this took it over."""
        sim = self.sim
        if not s.privacy_high or self.private(route):
            return True
        if sim.mode != "adaptive":
            sim.log.privacy_high_refused += 1
            sim.dp.fail(s, "FAILED_PRECONDITION: privacy=high: route crosses untrusted nodes")
            return False
        self.waiting_private.append(s)
        if not self.rolling:
            now = sim.clock.now
            calls = self.decider.planner_calls
            r = self.decider.private_route(self.monitor.snapshot(now), self.plan, now)
            if isinstance(r, Proposal):
                self.rollout(r, now, self.decider.planner_calls - calls)
            else:
                self._release_private(ok=r is True)
        return False

    def _release_private(self, ok: bool) -> None:
        waiting, self.waiting_private = self.waiting_private, []
        for s in waiting:
            if ok:
                self.sim.dp.start(s)
            else:
                self.sim.dp.fail(s, "FAILED_PRECONDITION: no private route")

    # ---- the broadcaster -------------------------------------------------------------------
    def rollout(self, p: Proposal, decided_at: float, planner_calls: int) -> None:
        """Prepare (every node fetches the shards it lacks and loads its new
        layers beside the old ones), then commit; abort if a node died meanwhile."""
        sim, st = self.sim, self.sim.settings
        self.rolling = True
        layers = sim.table.profile.layers
        serving: dict[NodeId, set[int]] = {}
        for r in self.plan.routes if self.plan is not None else ():
            for s in r.segments:
                serving.setdefault(s.node, set()).update(range(s.start, s.end))
        prepare = 0.0
        for r in p.plan.routes:
            for s in r.segments:
                new = set(range(s.start, s.end)) - serving.get(s.node, set())
                fetch = sum(layers[i].weight_bytes for i in new - sim.nodes[s.node].shards)
                load = sum(layers[i].weight_bytes for i in new)
                prepare = max(prepare, fetch * 8 / (st.registry_mbps * 1e6)
                              + load / (st.load_gbps * 1e9) + len(new) * st.load_layer_s)
        ready = sim.clock.now + planner_calls * st.planner_s + st.control_rtt_s + prepare
        sim.clock.at(ready, self._prepared, p, decided_at)

    def _prepared(self, p: Proposal, decided_at: float) -> None:
        sim = self.sim
        if any(not sim.nodes[n].alive for n in p.plan.nodes):
            self.decider.aborted(p, sim.clock.now)
            self._end_rollout(p, decided_at, None, "aborted")
            return
        sim.clock.at(sim.clock.now + sim.settings.control_rtt_s, self._commit, p, decided_at)

    def _commit(self, p: Proposal, decided_at: float) -> None:
        self.install(p.plan)
        self.decider.committed(p, decided_at)
        self._end_rollout(p, decided_at, self.sim.clock.now, "committed")

    def _end_rollout(self, p: Proposal, decided_at: float, at: float | None,
                     outcome: str) -> None:
        from edgesplit.sim.simulation import Reconfiguration

        sim = self.sim
        self.rolling = False
        sim.log.reconfigurations.append(Reconfiguration(
            decided_at - sim.t0, None if at is None else at - sim.t0, p.triggers,
            p.change.value, p.plan.epoch, outcome))
        if self.waiting_private:
            private = self.plan is not None and all(self.private(r) for r in self.plan.routes)
            if private or outcome != "committed":
                self._release_private(ok=private)
