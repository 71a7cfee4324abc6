"""Named parts (``Part.EMBED`` / ``Part.HEAD``) through the wire and into the planner.

One proto representation (``common.proto``: ``enum Part``, ``LayerRef``,
``LayerSeconds``, ``Segment.parts``), converted only in ``edgesplit.rpc.convert``.
"""

from __future__ import annotations

import pytest

from edgesplit.core.inventory import NodeInventory
from edgesplit.core.monitor import Monitor, MonitorConfig
from edgesplit.core.planner import solve
from edgesplit.core.reports import NodeReport, ResourceSample
from edgesplit.core.route import route_from_cuts
from edgesplit.core.types import (
    EMBED_ONLY,
    Epoch,
    LayerCost,
    LinkState,
    ModelProfile,
    NodeId,
    NodeState,
    Part,
    Plan,
    Segment,
    Trust,
    Workload,
    format_layer_key,
    parse_layer_key,
)
from edgesplit.rpc.convert import (
    ConversionError,
    node_from_proto,
    node_to_proto,
    plan_from_proto,
    plan_to_proto,
    segment_from_proto,
    segment_to_proto,
)
from edgesplit.rpc.convert_monitor import (
    cluster_from_state_proto,
    report_from_proto,
    report_to_proto,
    state_to_proto,
)
from edgesplit.v1 import common_pb2 as pb
from edgesplit.v1 import monitor_pb2 as mpb

A, B = NodeId("a"), NodeId("b")


def wire(msg: object) -> object:
    """Through bytes, as between processes."""
    return type(msg).FromString(msg.SerializeToString())  # type: ignore[attr-defined]


def test_node_state_with_embed_head_and_layer_times_round_trips() -> None:
    node = NodeState(A, Trust.TRUSTED, 1 << 30, 1e12, utilization=0.25, address="h:1",
                     layer_seconds=((Part.EMBED, 0.001), (0, 0.002), (3, 0.004),
                                    (Part.HEAD, 0.003)))
    msg = wire(node_to_proto(node))  # once "Value out of range: -1"
    assert [(m.layer.WhichOneof("ref"), m.seconds) for m in msg.layer_seconds] == [
        ("part", 0.001), ("index", 0.002), ("index", 0.004), ("part", 0.003)]
    assert msg.layer_seconds[0].layer.part == pb.PART_EMBED
    assert msg.layer_seconds[3].layer.part == pb.PART_HEAD
    assert node_from_proto(msg) == node


def test_segments_and_plans_round_trip_with_their_parts() -> None:
    plan = Plan(Epoch(4), "d", (route_from_cuts(A, [A, B], [2], 4),))
    msg = wire(plan_to_proto(plan))
    segs = msg.routes[0].segments
    assert [list(s.parts) for s in segs] == [[pb.PART_EMBED], [], [pb.PART_HEAD]]
    assert plan_from_proto(msg) == plan
    both = Segment(A, 0, 0, frozenset(Part))
    assert list(segment_to_proto(both).parts) == [pb.PART_EMBED, pb.PART_HEAD]  # execution order
    assert segment_from_proto(segment_to_proto(both)) == both


@pytest.mark.parametrize("bad,field", [
    (pb.NodeState(node_id="a", flops_per_s=1, layer_seconds=[pb.LayerSeconds(seconds=0.1)]),
     "node.layer_seconds[0].layer"),  # neither index nor part
    (pb.NodeState(node_id="a", flops_per_s=1, layer_seconds=[
        pb.LayerSeconds(layer=pb.LayerRef(part=pb.PART_UNSPECIFIED), seconds=0.1)]),
     "node.layer_seconds[0].layer.part"),
    (pb.NodeState(node_id="a", flops_per_s=1, layer_seconds=[
        pb.LayerSeconds(layer=pb.LayerRef(index=1), seconds=0.1),
        pb.LayerSeconds(layer=pb.LayerRef(index=1), seconds=0.2)]),
     "node.layer_seconds[1].layer"),  # one layer twice
    (pb.NodeState(node_id="a", flops_per_s=1, layer_seconds=[
        pb.LayerSeconds(layer=pb.LayerRef(part=pb.PART_HEAD), seconds=-1.0)]),
     "node.layer_seconds[0].seconds"),
])
def test_malformed_layer_keys_name_the_field(bad: pb.NodeState, field: str) -> None:
    with pytest.raises(ConversionError) as err:
        node_from_proto(bad)
    assert err.value.field == field


@pytest.mark.parametrize("parts,field", [
    ([pb.PART_UNSPECIFIED], "segment.parts[0]"),
    ([9], "segment.parts[0]"),
    ([pb.PART_HEAD, pb.PART_HEAD], "segment.parts"),
])
def test_malformed_segment_parts_name_the_field(parts: list[int], field: str) -> None:
    with pytest.raises(ConversionError) as err:
        segment_from_proto(pb.Segment(node_id="a", start=0, end=0, parts=parts))
    assert err.value.field == field


def test_layer_keys_parse_format_and_sort_in_execution_order() -> None:
    assert sorted([Part.HEAD, 3, Part.EMBED, 0]) == [Part.EMBED, 0, 3, Part.HEAD]
    assert [parse_layer_key(k) for k in ("embed", "3", 5, "HEAD")] == [Part.EMBED, 3, 5,
                                                                       Part.HEAD]
    assert [format_layer_key(k) for k in (Part.EMBED, 3, Part.HEAD)] == ["embed", "3", "head"]
    for bad in ("-1", "tail", -2, True):
        with pytest.raises(ValueError):
            parse_layer_key(bad)  # type: ignore[arg-type]


# ---- the measured embed / head cost reaches the planner --------------------------------
PROFILE = ModelProfile(
    "m", tuple(LayerCost(10, 1e9, 1) for _ in range(4)), embed=LayerCost(10, 0.0),
    head=LayerCost(10, 1e9), activation_bytes_per_token=256)
INVENTORY = NodeInventory((NodeState(A, Trust.TRUSTED, 1 << 30, 1e12, address="a:1"),
                           NodeState(B, Trust.TRUSTED, 1 << 30, 1e12, address="b:1")))


def planner_latency(decode: tuple[tuple[int | Part, float], ...]) -> tuple[float, Plan]:
    """Agent report -> wire -> monitor -> E(t) on the wire -> planner's latency figure."""
    mon = Monitor(MonitorConfig(), INVENTORY.ids, now=0.0)
    report = NodeReport(A, 0, 0.0, ResourceSample(0.0, 0, 1 << 30), decode_layer_s=decode)
    mon.ingest(report_from_proto(wire(report_to_proto(report))), now=1.0)
    mon.ingest(NodeReport(B, 0, 0.0, ResourceSample(0.0, 0, 1 << 30)), now=1.0)
    msg = wire(state_to_proto(mon.snapshot(now=1.5), INVENTORY, version=1, wall_time=10.0,
                              report_interval_s=1.0, dead_after_s=3.0))
    cluster = cluster_from_state_proto(msg)
    cluster = type(cluster)(cluster.nodes, (LinkState(A, B, 0.001, 1e9),
                                            LinkState(B, A, 0.001, 1e9)))
    result = solve(cluster, PROFILE, Workload(), [A])
    assert result.plan is not None, result.reason
    return result.cost.latency_s, result.plan


def test_measured_head_and_embed_time_change_the_planners_figure() -> None:
    base, _ = planner_latency(((0, 0.001),))
    slow, plan = planner_latency(((Part.EMBED, 0.020), (0, 0.001), (Part.HEAD, 0.050)))
    # Embed was free by FLOPs (0 s) and head 1 ms (1e9 / 1e12): the measured 20 ms
    # and 50 ms replace the estimates in the decode step, one to one.
    assert slow - base == pytest.approx(0.020 + 0.050 - 0.001)
    assert plan.routes[0].segments[0].parts == EMBED_ONLY


def test_status_lists_layer_times_by_name_in_execution_order() -> None:
    from edgesplit.cli.status_cmd import monitor_data

    def timing(ref: pb.LayerRef, s: float) -> mpb.LayerTiming:
        return mpb.LayerTiming(layer=ref, decode_s_per_token=s)

    view = mpb.NodeView(state=pb.NodeState(node_id="a"), layers=[
        timing(pb.LayerRef(part=pb.PART_HEAD), 0.3), timing(pb.LayerRef(index=1), 0.2),
        timing(pb.LayerRef(part=pb.PART_EMBED), 0.1)])
    data = monitor_data(mpb.EnvironmentState(nodes=[view]))
    assert [(t["layer"], t["decode_s_per_token"]) for t in data["nodes"][0]["layers"]] == [
        ("embed", 0.1), (1, 0.2), ("head", 0.3)]
