"""The orchestrator's per-cycle decision as a pure step (edgesplit.core.control).

Each test drives ``step`` the way a caller does: it answers ``Revise`` with the
real core planner (``solve_request``) or with a chosen answer, and checks the
action, so the order of Algorithm 1 (placement first, then re-split), the
hysteresis, the cool-down, failover and privacy are pinned without a service.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from edgesplit.core import control as ctl
from edgesplit.core import types as t
from edgesplit.core.environment import EnvironmentState, LinkAssumption, complete_links
from edgesplit.core.inventory import NodeInventory
from edgesplit.core.monitor import Monitor, MonitorConfig
from edgesplit.core.reports import LinkObservation, NodeReport, RequestSample, ResourceSample
from edgesplit.core.triggers import TriggerConfig
from edgesplit.core.types import CostBreakdown, Mode, NodeId, Plan, Privacy

A, B, C, D = NodeId("a"), NodeId("b"), NodeId("c"), NodeId("d")
NOW = 1000.0
FAST = 1e9
LAYER = t.LayerCost(weight_bytes=1 << 20, flops_per_token=1e9, kv_bytes_per_token=256)
PROFILE = t.ModelProfile("tiny", (LAYER,) * 6, LAYER, LAYER, 512, "digest")
# a (embed, 0-2) -> b (2-4) -> c (4-6) -> a (head)
PLAN = Plan(t.Epoch(3), "digest", (t.Route(A, (
    t.Segment(A, 0, 2, parts=t.EMBED_ONLY), t.Segment(B, 2, 4), t.Segment(C, 4, 6),
    t.Segment(A, 6, 6, parts=t.HEAD_ONLY))),))
# Sensitive layers 0-6 on d, which nobody trusts.
LEAKY = Plan(t.Epoch(3), "digest", (t.Route(A, (
    t.Segment(A, 0, 0, parts=t.EMBED_ONLY), t.Segment(D, 0, 6), t.Segment(A, 6, 6, parts=t.HEAD_ONLY))),))
INVENTORY = NodeInventory(
    tuple(t.NodeState(n, t.Trust.TRUSTED, 1 << 30, 1e12) for n in (A, B, C))
    + (t.NodeState(D, t.Trust.UNTRUSTED, 1 << 30, 1e12),))
CONFIG = ctl.ControlConfig(triggers=TriggerConfig(cooldown_s=30.0), entries=(A,))


def env(*, steps_s: float | None = None, silent: tuple[str, ...] = (),
        bandwidth: dict[tuple[str, str], float] | None = None) -> EnvironmentState:
    """E(t) at NOW after one report per node; every link measured (``bandwidth``
    overrides), silent nodes last heard long ago (dead)."""
    m = Monitor(MonitorConfig(), [A, B, C, D], now=0.0)
    bw = bandwidth or {}
    for n in "abcd":
        links = tuple(LinkObservation(NodeId(p), 0.001, bw.get((n, p), FAST))
                      for p in "abcd" if p != n)
        reqs = (RequestSample(0.2, (steps_s,)),) if steps_s is not None and n == "a" else ()
        report = NodeReport(NodeId(n), 0, 0.0, ResourceSample(0.1, 1, 2), requests=reqs,
                            links=links)
        m.ingest(report, now=0.0 if n in silent else NOW)
    return m.snapshot(NOW)


def obs(e: EnvironmentState, config: ctl.ControlConfig = CONFIG) -> ctl.Observation:
    return ctl.observation(e, e.to_cluster_state(INVENTORY), PROFILE, config)


def cost(total: float, feasible: bool = True) -> CostBreakdown:
    return CostBreakdown(total, total, total, total, 0.0, 0.0, feasible)


def answer(total: float | None, current: float = 1.0, plan: Plan = PLAN) -> ctl.PlanAnswer:
    """A plan costing ``total`` (None: infeasible); the current one costs ``current``."""
    if total is None:
        return ctl.PlanAnswer(None, cost(float("inf"), False), cost(current), "no room")
    return ctl.PlanAnswer(replace(plan, epoch=t.Epoch(4)), cost(total), cost(current))


def test_quiet_cluster_keeps_the_plan_without_asking_the_planner() -> None:
    action = ctl.step(obs(env(steps_s=0.05)), PLAN, ctl.ControlHistory(), NOW, CONFIG)
    assert isinstance(action, ctl.Wait) and not action.held_by_cooldown


def test_a_trigger_asks_for_placement_first_and_adopts_a_better_one() -> None:
    o, h = obs(env(steps_s=0.3)), ctl.ControlHistory(last_epoch=7)
    first = ctl.step(o, PLAN, h, NOW, CONFIG)
    assert isinstance(first, ctl.Revise)
    q = first.request
    assert (q.mode, q.current, q.epoch, q.entries) == (Mode.PLACEMENT, PLAN, 8, (A,))
    assert q.workload.privacy is Privacy.LOW
    # A better placement: the re-split is weighed too, and taken only when it
    # beats the placement by the margin.
    again = ctl.step(o, PLAN, h, NOW, CONFIG, {Mode.PLACEMENT: answer(0.5)})
    assert isinstance(again, ctl.Revise) and again.request.mode is Mode.RESPLIT
    done = ctl.step(o, PLAN, h, NOW, CONFIG, {Mode.PLACEMENT: answer(0.5),
                                               Mode.RESPLIT: answer(0.49)})
    assert isinstance(done, ctl.Reconfigure)
    assert (done.change, done.mode) == (ctl.Change.MIGRATE, Mode.PLACEMENT)
    assert done.triggers == ("latency",)
    assert done.old_cost == cost(1.0) and done.cost == cost(0.5)
    far = ctl.step(o, PLAN, h, NOW, CONFIG, {Mode.PLACEMENT: answer(0.5),
                                              Mode.RESPLIT: answer(0.3)})
    assert isinstance(far, ctl.Reconfigure) and far.change is ctl.Change.RESPLIT
    assert far.cost == cost(0.3)


def test_infeasible_placement_falls_back_to_a_resplit() -> None:
    o = obs(env(steps_s=0.3))
    again = ctl.step(o, PLAN, ctl.ControlHistory(), NOW, CONFIG, {Mode.PLACEMENT: answer(None)})
    assert isinstance(again, ctl.Revise) and again.request.mode is Mode.RESPLIT
    done = ctl.step(o, PLAN, ctl.ControlHistory(), NOW, CONFIG,
                    {Mode.PLACEMENT: answer(None), Mode.RESPLIT: answer(0.6)})
    assert isinstance(done, ctl.Reconfigure) and done.change is ctl.Change.RESPLIT
    assert "placement infeasible" in done.reason


def test_hysteresis_keeps_the_plan_and_quiets_the_same_triggers() -> None:
    o = obs(env(steps_s=0.3))
    answers = {Mode.PLACEMENT: answer(0.97), Mode.RESPLIT: answer(0.96)}  # < 5 % better
    keep = ctl.step(o, PLAN, ctl.ControlHistory(), NOW, CONFIG, answers)
    assert isinstance(keep, ctl.Keep)
    assert (keep.change, keep.outcome) == (ctl.Change.KEEP, ctl.Outcome.REJECTED_MARGIN)
    assert keep.triggers == ("latency",)
    assert keep.new_cost == cost(0.96)  # the better of the two is what was turned down
    h = ctl.after(ctl.ControlHistory(), keep, keep.outcome, NOW, CONFIG)
    assert h.quiet_until == NOW + 15.0
    assert isinstance(ctl.step(o, PLAN, h, NOW + 1, CONFIG), ctl.Wait)  # not re-planned every cycle
    assert isinstance(ctl.step(o, PLAN, h, NOW + 16, CONFIG), ctl.Revise)
    # A dead node is never held back by "keep".
    assert isinstance(ctl.step(obs(env(silent=("c",))), PLAN, h, NOW + 1, CONFIG), ctl.Revise)


def test_infeasible_everywhere_keeps_the_plan() -> None:
    keep = ctl.step(obs(env(steps_s=0.3)), PLAN, ctl.ControlHistory(), NOW, CONFIG,
                    {Mode.PLACEMENT: answer(None), Mode.RESPLIT: answer(None)})
    assert isinstance(keep, ctl.Keep) and keep.outcome is ctl.Outcome.INFEASIBLE


def test_cooldown_holds_non_urgent_triggers() -> None:
    o = obs(env(steps_s=0.3))
    h = ctl.ControlHistory(last_reconfigured_at=NOW - 10)
    held = ctl.step(o, PLAN, h, NOW, CONFIG)
    assert isinstance(held, ctl.Wait) and held.held_by_cooldown and "cool-down" in held.reason
    assert isinstance(ctl.step(o, PLAN, h, NOW + 20, CONFIG), ctl.Revise)  # 30 s after it


def test_dead_node_fails_over_at_once_with_the_real_planner() -> None:
    o = obs(env(silent=("c",)))
    h = ctl.ControlHistory(last_reconfigured_at=NOW - 1, last_epoch=3)  # deep in the cool-down
    action = ctl.decide(o, PLAN, h, NOW, CONFIG)
    assert isinstance(action, ctl.Reconfigure), action
    assert action.triggers == ("failover",)
    assert C not in action.plan.nodes and action.plan.epoch == 4
    assert action.old_cost is not None and not action.old_cost.feasible  # the broken plan


def test_privacy_route_on_demand() -> None:
    o = obs(env())
    h = ctl.demand_privacy(ctl.ControlHistory(last_epoch=3), NOW, CONFIG)
    assert h.private_until == NOW + CONFIG.privacy_hold_s
    assert isinstance(ctl.private_route(o, PLAN, h, CONFIG), ctl.Wait)  # already private
    ask = ctl.private_route(o, LEAKY, h, CONFIG)
    assert isinstance(ask, ctl.Revise) and ask.request.mode is Mode.RESPLIT
    assert ask.request.workload.privacy is Privacy.HIGH
    got = ctl.private_route(o, LEAKY, h, CONFIG, {Mode.RESPLIT: ctl.solve_request(ask.request)})
    assert isinstance(got, ctl.Reconfigure) and got.triggers == ("privacy",)
    assert ctl.is_private(got.plan, o.cluster, CONFIG) and D not in got.plan.nodes
    refused = ctl.private_route(o, LEAKY, h, CONFIG, {Mode.RESPLIT: answer(None)})
    assert isinstance(refused, ctl.Refuse) and "no room" in refused.reason
    assert ctl.decide(o, LEAKY, h, NOW, CONFIG, private=True) == got  # the same, driven
    static = ctl.private_route(o, LEAKY, h, replace(CONFIG, static=True))
    assert isinstance(static, ctl.Refuse)


def test_privacy_hold_fires_the_trigger_through_the_cooldown() -> None:
    o = obs(env())
    h = ctl.ControlHistory(last_reconfigured_at=NOW - 1)
    assert isinstance(ctl.step(o, LEAKY, h, NOW, CONFIG), ctl.Wait)  # no privacy=high request
    held = ctl.demand_privacy(h, NOW, CONFIG)
    action = ctl.decide(o, LEAKY, held, NOW, CONFIG)
    assert isinstance(action, ctl.Reconfigure) and action.triggers == ("privacy",)
    assert ctl.is_private(action.plan, o.cluster, CONFIG)


def test_first_plan_waits_for_links_then_plans_a_resplit() -> None:
    e = env()
    partial = t.ClusterState(e.to_cluster_state(INVENTORY).nodes, ())  # no link measured yet
    o = ctl.observation(e, partial, PROFILE, CONFIG)
    assert o.unmeasured == 12 and len(o.cluster.links) == 12  # assumed, counted
    h = ctl.observe(ctl.ControlHistory(), e, CONFIG)
    assert h.first_heard_at == NOW
    assert ctl.observe(ctl.ControlHistory(), e, CONFIG, now=5.0).first_heard_at == 5.0
    assert isinstance(ctl.step(o, None, h, NOW + 1, CONFIG), ctl.Wait)
    first = ctl.decide(o, None, h, NOW + CONFIG.initial_wait_s, CONFIG)
    assert isinstance(first, ctl.Reconfigure) and first.change is ctl.Change.RESPLIT
    assert first.triggers == () and first.old_cost is None and first.plan.epoch == 1
    # Everything measured: no need to wait.
    assert isinstance(ctl.decide(obs(e), None, h, NOW + 1, CONFIG), ctl.Reconfigure)


def test_first_plan_infeasible_is_recorded_not_quieted() -> None:
    o = obs(env())
    keep = ctl.step(o, None, ctl.ControlHistory(), NOW, CONFIG, {Mode.RESPLIT: answer(None)})
    assert isinstance(keep, ctl.Keep) and keep.change is ctl.Change.RESPLIT and keep.triggers == ()
    assert ctl.after(ctl.ControlHistory(), keep, keep.outcome, NOW, CONFIG) == ctl.ControlHistory()


def test_static_never_replans() -> None:
    action = ctl.step(obs(env(silent=("c",))), PLAN, ctl.ControlHistory(), NOW,
                      replace(CONFIG, static=True))
    assert isinstance(action, ctl.Wait)


def test_after_a_rollout() -> None:
    nine = replace(PLAN, epoch=t.Epoch(9))
    move = ctl.Reconfigure(ctl.Change.MIGRATE, nine, cost(0.5), cost(1.0), ("latency",), "")
    ok = ctl.after(ctl.ControlHistory(last_epoch=3), move, ctl.Outcome.COMMITTED, NOW, CONFIG)
    assert (ok.last_reconfigured_at, ok.last_epoch, ok.retry_at) == (NOW, 9, ctl.NEVER)
    bad = ctl.after(ctl.ControlHistory(last_epoch=3), move, ctl.Outcome.ABORTED, NOW, CONFIG)
    assert (bad.last_reconfigured_at, bad.last_epoch) == (None, 9)  # epoch 9 is spent
    assert bad.retry_at == NOW + CONFIG.retry_backoff_s
    o = obs(env(silent=("c",)))
    assert isinstance(ctl.step(o, PLAN, bad, NOW + 1, CONFIG), ctl.Wait)  # backing off
    nxt = ctl.step(o, PLAN, bad, NOW + 3, CONFIG)
    assert isinstance(nxt, ctl.Revise) and nxt.request.epoch == 10


def test_observe_measures_the_request_rate() -> None:
    e = env()
    h = ctl.observe(ctl.ControlHistory(), replace(e, requests_total=10), CONFIG)
    assert h.rate is None and ctl.workload(h, CONFIG, False).requests_per_s == 1.0
    h = ctl.observe(h, replace(e, now=NOW + 2, requests_total=30), CONFIG)
    assert h.rate == pytest.approx(10.0)
    h = ctl.observe(h, replace(e, now=NOW + 4, requests_total=30), CONFIG)
    assert h.rate == pytest.approx(8.0)  # 0.8 * 10 + 0.2 * 0
    idle = replace(h, rate=0.001)
    assert ctl.workload(idle, CONFIG, True).requests_per_s == CONFIG.min_rate
    assert ctl.workload(idle, CONFIG, True).privacy is Privacy.HIGH


def test_sessions_at_the_entries_count_only_when_the_planner_may_replicate() -> None:
    e = env()
    busy = replace(e, nodes={**e.nodes, A: replace(e.nodes[A], active_sessions=12.0)})
    h = ctl.observe(ctl.ControlHistory(), busy, CONFIG)
    assert h.sessions == pytest.approx(12.0)
    h = ctl.observe(h, replace(e, now=NOW + 2), CONFIG)
    assert h.sessions == pytest.approx(0.8 * 12)
    assert ctl.workload(h, CONFIG, False).concurrent_sessions == 1  # max_replicas 1
    may = replace(CONFIG, workload=replace(CONFIG.workload, max_replicas=2))
    assert ctl.workload(h, may, False).concurrent_sessions == 10


def test_one_rule_for_unmeasured_links() -> None:
    nodes = (t.NodeState(A, t.Trust.TRUSTED, 1, 1.0), t.NodeState(B, t.Trust.TRUSTED, 1, 1.0),
             t.NodeState(C, t.Trust.TRUSTED, 1, 1.0, alive=False))
    measured = t.LinkState(A, B, 0.002, 5e8)
    cluster = t.ClusterState(nodes, (measured,))
    done, missing = complete_links(cluster, LinkAssumption(0.02, 1e7))
    assert missing == 1  # b -> a; c is dead: no link to or from it is assumed
    assert done.links == (measured, t.LinkState(B, A, 0.02, 1e7))
    assert complete_links(cluster, None) == (cluster, 1)
    e = env()
    assert e.to_cluster_state(INVENTORY, LinkAssumption()) == e.to_cluster_state(INVENTORY)
