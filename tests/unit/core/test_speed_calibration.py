"""Node speed calibrated from the node's own measurements: an overloaded node
gets fewer layers from the next plan, not more (docs/architecture.md §6)."""

from __future__ import annotations

import pytest

from edgesplit.core import control as ctl
from edgesplit.core import types as t
from edgesplit.core.environment import calibrated_speed
from edgesplit.core.inventory import NodeInventory
from edgesplit.core.monitor import Monitor, MonitorConfig
from edgesplit.core.planner import solve
from edgesplit.core.reports import LinkObservation, NodeReport, ResourceSample
from edgesplit.core.types import Mode, NodeId, Plan

A, B, C, D = NodeId("a"), NodeId("b"), NodeId("c"), NodeId("d")
LAYER = t.LayerCost(weight_bytes=1 << 20, flops_per_token=1e9, kv_bytes_per_token=0)
PROFILE = t.ModelProfile("eight", (LAYER,) * 8, t.LayerCost(1, 1e6, 0), t.LayerCost(1, 1e6, 0),
                         512, "digest")
# b and c declare 1e12 FLOP/s: 1 ms per layer (1.1 ms at the 0.1 background
# every node reports); d is ten times slower and runs nothing yet; the entry a
# only has room for embed and head.
INVENTORY = NodeInventory((t.NodeState(A, t.Trust.TRUSTED, 1024, 1e12),
                           t.NodeState(B, t.Trust.TRUSTED, 1 << 30, 1e12),
                           t.NodeState(C, t.Trust.TRUSTED, 1 << 30, 1e12),
                           t.NodeState(D, t.Trust.TRUSTED, 1 << 30, 1e11)))
LIGHT = t.Workload(requests_per_s=0.05)
# a embeds -> b [0,2) -> c [2,8) -> a head
PLAN = Plan(t.Epoch(3), "digest", (t.Route(A, (
    t.Segment(A, 0, 0, parts=t.EMBED_ONLY), t.Segment(B, 0, 2), t.Segment(C, 2, 8),
    t.Segment(A, 8, 8, parts=t.HEAD_ONLY))),))
CONFIG = ctl.ControlConfig(entries=(A,))
WEIGHTS = t.Weights(beta=0.0)


def overloaded_b() -> ctl.Observation:
    """b runs its two layers 20x slower than it declares (another tenant's
    load its utilisation does not show); c runs its six as declared."""
    m = Monitor(MonitorConfig(layer_alpha=1.0), [A, B, C, D], now=0.0)
    decode = {"a": (), "b": tuple((i, 0.020) for i in range(2)),
              "c": tuple((i, 0.001) for i in range(2, 8)), "d": ()}
    for n in "abcd":
        links = tuple(LinkObservation(NodeId(p), 0.001, 1e9) for p in "abcd" if p != n)
        m.ingest(NodeReport(NodeId(n), 0, 0.0, ResourceSample(0.1, 1, 2),
                            decode_layer_s=decode[n], links=links), now=10.0)
    return ctl.observe_environment(m.snapshot(10.0), INVENTORY, PROFILE, CONFIG)


def layers_on(plan: Plan, node: NodeId) -> int:
    return sum(s.num_layers for r in plan.routes for s in r.segments if s.node == node)


def test_the_overloaded_node_is_planned_at_its_measured_speed() -> None:
    o = overloaded_b()
    # b: 20 ms measured against the 1.1 ms its declared speed and free share give.
    assert o.cluster.node(B).flops_per_s == pytest.approx(1e12 / 18)
    assert o.cluster.node(C).flops_per_s == 1e12  # 10 % off its estimate: noise, as declared
    assert o.cluster.node(D).flops_per_s == 1e11  # nothing measured: as declared
    assert calibrated_speed(1e12, o.env.nodes[B], PROFILE) == pytest.approx(1e12 / 18)


@pytest.mark.parametrize("mode", [Mode.PLACEMENT, Mode.RESPLIT])
def test_after_an_overload_the_next_plan_gives_that_node_fewer_layers(mode: Mode) -> None:
    o = overloaded_b()
    res = solve(o.cluster, o.profile, LIGHT, [A], mode, WEIGHTS, PLAN, t.Epoch(4))
    assert res.plan is not None, res.reason
    assert layers_on(res.plan, B) < layers_on(PLAN, B)

def test_without_calibration_a_placement_handed_the_overloaded_node_more() -> None:
    """The failure the calibration fixes: at declared speed b's six unmeasured
    layers look fast, and the placement swaps b and c (6 layers onto b)."""
    o = overloaded_b()
    raw = o.env.to_cluster_state(INVENTORY)
    old = solve(raw, o.profile, LIGHT, [A], Mode.PLACEMENT, WEIGHTS, PLAN, t.Epoch(4))
    assert old.plan is not None and layers_on(old.plan, B) == 6


def stale_after_overload(later_cpu: float) -> ctl.Observation:
    """b and c run their layers at 1 ms with nothing else on them (cpu 0);
    then c's background goes to ``later_cpu`` while it runs nothing (the plan
    moved away, or it is idle): its measured times are from before."""
    m = Monitor(MonitorConfig(alpha=1.0, layer_alpha=1.0), [A, B, C, D], now=0.0)
    decode = {"a": (), "b": tuple((i, 0.001) for i in range(2)),
              "c": tuple((i, 0.001) for i in range(2, 8)), "d": ()}
    links = {n: tuple(LinkObservation(NodeId(p), 0.001, 1e9) for p in "abcd" if p != n)
             for n in "abcd"}
    for n in "abcd":
        m.ingest(NodeReport(NodeId(n), 0, 0.0, ResourceSample(0.0, 1, 2),
                            decode_layer_s=decode[n], links=links[n]), now=1.0)
    m.ingest(NodeReport(C, 1, 1.0, ResourceSample(later_cpu, 1, 2), links=links["c"]), now=2.0)
    return ctl.observe_environment(m.snapshot(2.0), INVENTORY, PROFILE, CONFIG)


def test_a_time_measured_before_an_overload_is_scaled_to_the_load_now() -> None:
    """The smart-city failure: the cloud's layer times, measured before another
    tenant took 90 % of it, stood as they were; worse, they were read at the
    new free share, making every layer look ten times cheaper on every node."""
    o = stale_after_overload(0.9)
    c = o.cluster.node(C)
    assert dict(c.layer_seconds)[2] == pytest.approx(0.001 / 0.1)  # then 100 % free, now 10 %
    assert dict(o.cluster.node(B).layer_seconds)[0] == pytest.approx(0.001)  # b: unchanged
    # b and c both measured 1 ms at full speed: 1e9 FLOPs per token, as profiled.
    assert o.profile.layers[2].flops_per_token == pytest.approx(1e9)
    res = solve(o.cluster, o.profile, LIGHT, [A], Mode.PLACEMENT, WEIGHTS, PLAN, t.Epoch(4))
    assert res.plan is not None, res.reason
    assert layers_on(res.plan, C) < layers_on(PLAN, C)


def test_small_changes_of_background_leave_measured_times_alone() -> None:
    o = stale_after_overload(0.15)  # within RESCALE_BEYOND: noise, not an overload
    assert dict(o.cluster.node(C).layer_seconds)[2] == pytest.approx(0.001)


def test_a_node_that_recovered_is_planned_at_its_speed_again() -> None:
    m = Monitor(MonitorConfig(alpha=1.0, layer_alpha=1.0), [C], now=0.0)
    m.ingest(NodeReport(C, 0, 0.0, ResourceSample(0.9, 1, 2),
                        decode_layer_s=((2, 0.010),)), now=1.0)  # measured during an overload
    m.ingest(NodeReport(C, 1, 1.0, ResourceSample(0.0, 1, 2)), now=2.0)
    env = m.snapshot(2.0)
    assert env.nodes[C].decode_background == pytest.approx(0.9)
    seconds = dict(env.to_cluster_state(INVENTORY).node(C).layer_seconds)
    assert seconds[2] == pytest.approx(0.001)
