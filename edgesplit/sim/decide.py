"""The orchestrator's per-cycle decision, as the simulator calls it.

This is the one seam between the simulator and the project's decision code:
``Decider.cycle`` takes E(t) (from the real monitor reducer), the plan in
force and ``now``, and returns what to roll out, if anything. It runs the
same functions, in the same order, as ``services/orchestrator/loop.py``:
``evaluate_triggers``, the quiet period after a "keep" verdict,
placement-then-resplit through ``planner.solve``, ``decide_revision`` (the
hysteresis margin) and the broken-plan rule. Only I/O is left out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from edgesplit.core.environment import EnvironmentState
from edgesplit.core.inventory import NodeInventory
from edgesplit.core.planner import solve
from edgesplit.core.triggers import (
    TriggerConfig,
    decide_revision,
    evaluate_triggers,
    untrusted_sensitive_nodes,
)
from edgesplit.core.types import (
    ClusterState,
    CostBreakdown,
    Epoch,
    LinkState,
    Mode,
    ModelProfile,
    NodeId,
    Plan,
    Privacy,
    Weights,
    Workload,
)


@dataclass(frozen=True, slots=True)
class DeciderConfig:
    """The orchestrator's flags that shape decisions (``OrchestratorConfig``)."""

    triggers: TriggerConfig = field(default_factory=TriggerConfig)
    margin: float = 0.05
    weights: Weights = field(default_factory=Weights)
    prompt_tokens: int = 64
    new_tokens: int = 64
    requests_per_s: float = 1.0
    privacy_depth: int = 1
    privacy_hold_s: float = 120.0
    retry_backoff_s: float = 2.0
    default_link_rtt_s: float = 0.01
    default_link_bandwidth_bps: float = 100e6


@dataclass(frozen=True, slots=True)
class Proposal:
    plan: Plan
    cost: CostBreakdown
    action: str  # "resplit" | "migrate"
    triggers: tuple[str, ...]
    old_cost: CostBreakdown | None = None


@dataclass(slots=True)
class Decider:
    config: DeciderConfig
    inventory: NodeInventory
    profile: ModelProfile
    entries: tuple[NodeId, ...]
    last_reconfigured_at: float | None = None
    quiet_until: float = 0.0
    retry_at: float = 0.0
    private_until: float = 0.0
    last_epoch: int = 0
    rate: float | None = None
    planner_calls: int = 0
    # Only for measuring (``sim bench``): the wall time of planner calls. No
    # decision reads it, so results stay a function of the inputs and seed.
    clock: Callable[[], float] | None = None
    planner_wall_s: float = 0.0
    outcomes: dict[str, int] = field(default_factory=dict)
    _last_count: tuple[int, float] | None = None

    # ---- inputs, as the service gathers them ------------------------------------------
    def observe_rate(self, env: EnvironmentState) -> None:
        if self._last_count is not None and env.now > self._last_count[1]:
            done, at = self._last_count
            sample = max(0, env.requests_total - done) / (env.now - at)
            self.rate = sample if self.rate is None else 0.8 * self.rate + 0.2 * sample
        self._last_count = (env.requests_total, env.now)

    def workload(self, privacy_high: bool) -> Workload:
        c = self.config
        rate = max(self.rate, 0.05) if self.rate else c.requests_per_s
        return Workload(prompt_tokens=c.prompt_tokens, new_tokens=c.new_tokens,
                        requests_per_s=rate, privacy_depth=c.privacy_depth,
                        privacy=Privacy.HIGH if privacy_high else Privacy.LOW)

    def cluster(self, env: EnvironmentState) -> ClusterState:
        """E(t) for the planner; unmeasured links between alive nodes get the
        configured assumption (``ControlLoop.cluster``)."""
        cs = env.to_cluster_state(self.inventory)
        alive = [n.node_id for n in cs.nodes if n.alive]
        have = {(lk.src, lk.dst) for lk in cs.links}
        known = {n.node_id for n in self.inventory.nodes}
        extra = [LinkState(a, b, self.config.default_link_rtt_s,
                           self.config.default_link_bandwidth_bps)
                 for a in alive for b in alive
                 if a != b and (a, b) not in have and len(known) <= 64]
        return ClusterState(cs.nodes, cs.links + tuple(extra)) if extra else cs

    def _solve(self, env: EnvironmentState, cluster: ClusterState, mode: Mode,
               privacy_high: bool, current: Plan | None):  # type: ignore[no-untyped-def]
        self.planner_calls += 1
        start = self.clock() if self.clock is not None else 0.0
        profile = env.measured_profile(self.profile, self.inventory)
        result = solve(cluster, profile, self.workload(privacy_high), self.entries, mode,
                       self.config.weights, current, Epoch(self.last_epoch + 1))
        if self.clock is not None:
            self.planner_wall_s += self.clock() - start
        return result

    def private(self, plan: Plan, cluster: ClusterState) -> bool:
        nodes = {n.node_id: n for n in cluster.nodes}
        return not any(untrusted_sensitive_nodes(r, nodes, self.config.privacy_depth)
                       for r in plan.routes)

    # ---- the cycle ------------------------------------------------------------------------
    def initial(self, env: EnvironmentState, now: float) -> Proposal | None:
        cluster = self.cluster(env)
        r = self._solve(env, cluster, Mode.RESPLIT, now < self.private_until, None)
        return None if r.plan is None else Proposal(r.plan, r.cost, "resplit", ("initial",))

    def cycle(self, env: EnvironmentState, plan: Plan, now: float) -> Proposal | None:
        """One interval of Algorithm 1: a plan to roll out, or None."""
        self.observe_rate(env)
        if now < self.retry_at:
            return None
        cluster = self.cluster(env)
        privacy_high = now < self.private_until
        decision = evaluate_triggers(
            env, plan, cluster, self.last_reconfigured_at, now, self.config.triggers,
            privacy_violation=privacy_high and not self.private(plan, cluster))
        if not decision.act:
            return None
        urgent = any(t.urgent for t in decision.fired)
        if not urgent and now < self.quiet_until:
            return None
        fired = tuple(sorted({t.kind.value for t in decision.fired}))
        placement = self._solve(env, cluster, Mode.PLACEMENT, privacy_high, plan)
        current = placement.current_cost
        p_cost = placement.cost if placement.plan is not None else None
        verdict = decide_revision(current, p_cost, None, self.config.margin)
        resplit = None
        broken = current is None or not current.feasible
        if verdict.try_resplit or broken:
            resplit = self._solve(env, cluster, Mode.RESPLIT, privacy_high, plan)
            r_cost = resplit.cost if resplit.plan is not None else None
            if broken and p_cost is not None and r_cost is not None \
                    and r_cost.total < p_cost.total:
                verdict = decide_revision(current, None, r_cost, self.config.margin)
            elif not broken or p_cost is None:
                verdict = decide_revision(current, p_cost, r_cost, self.config.margin)
        if verdict.adopt is None:
            best = resplit if resplit is not None and resplit.plan is not None else placement
            outcome = "infeasible" if best.plan is None else "rejected_margin"
            self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
            if not urgent:
                self.quiet_until = now + self.config.triggers.cooldown_s / 2
            return None
        chosen = placement if verdict.adopt is Mode.PLACEMENT else resplit
        assert chosen is not None and chosen.plan is not None
        action = "migrate" if verdict.adopt is Mode.PLACEMENT else "resplit"
        return Proposal(chosen.plan, chosen.cost, action, fired, current)

    def private_route(self, env: EnvironmentState, plan: Plan | None, now: float
                      ) -> Proposal | None | bool:
        """``ensure_private_route``: True if ``plan`` is already private, else a
        private plan to roll out, or None when there is none."""
        self.private_until = now + self.config.privacy_hold_s
        cluster = self.cluster(env)
        if plan is not None and self.private(plan, cluster):
            return True
        r = self._solve(env, cluster, Mode.RESPLIT, True, plan)
        return None if r.plan is None else Proposal(r.plan, r.cost, "resplit", ("privacy",))

    # ---- outcomes ----------------------------------------------------------------------------
    def committed(self, p: Proposal, now: float) -> None:
        self.last_epoch = max(self.last_epoch, p.plan.epoch)
        self.last_reconfigured_at = now
        self.outcomes["committed"] = self.outcomes.get("committed", 0) + 1

    def aborted(self, p: Proposal, now: float) -> None:
        self.last_epoch = max(self.last_epoch, p.plan.epoch)
        self.retry_at = now + self.config.retry_backoff_s
        self.outcomes["aborted"] = self.outcomes.get("aborted", 0) + 1
