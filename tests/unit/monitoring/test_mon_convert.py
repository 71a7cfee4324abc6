"""Monitor messages <-> core values (edgesplit/rpc/convert_monitor.py) and the
monitor's input files (services/monitor/loaders.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgesplit.core.inventory import NodeInventory
from edgesplit.core.monitor import Monitor, MonitorConfig
from edgesplit.core.reports import (
    GpuSample,
    LinkObservation,
    LinkSource,
    NodeReport,
    RequestSample,
    ResourceSample,
)
from edgesplit.core.types import NodeId, NodeState, Part, Trust
from edgesplit.rpc.convert import ConversionError
from edgesplit.rpc.convert_monitor import (
    cluster_from_state_proto,
    environment_from_proto,
    inventory_from_state_proto,
    report_from_proto,
    report_to_proto,
    state_to_proto,
)
from edgesplit.v1 import common_pb2
from edgesplit.v1 import monitor_pb2 as mpb
from services.monitor.loaders import ConfigFileError, load_inventory, load_profile, parse_bytes

A, B = NodeId("a"), NodeId("b")


def sample_report() -> NodeReport:
    return NodeReport(
        node_id=A, seq=4, now=100.0, incarnation=2,
        resources=ResourceSample(0.5, 100, 1000, GpuSample(0.7, 10, 80), 1, 2),
        prefill_layer_s=((Part.EMBED, 0.001), (0, 0.002)),
        decode_layer_s=((0, 0.004), (1, 0.005), (Part.HEAD, 0.003)),
        activation_bytes=((B, 512),), compute_busy_s=0.2,
        requests=(RequestSample(0.3, (0.01, 0.02), True),),
        links=(LinkObservation(B, 0.05, None, LinkSource.PROBE),
               LinkObservation(B, None, 1e7, LinkSource.PASSIVE)))


def test_report_round_trip() -> None:
    r = sample_report()
    assert report_from_proto(report_to_proto(r, committed_epoch=3)) == r


@pytest.mark.parametrize("mutate,field", [
    (lambda m: setattr(m, "node_id", ""), "report.node_id"),
    (lambda m: m.layers.add(layer=common_pb2.LayerRef(part=7)), "report.layers"),  # unknown part
    (lambda m: m.layers.add(decode_s_per_token=0.1), "report.layers"),  # no layer named
    (lambda m: m.links.add(peer="b", source=7), "report.links"),  # unknown source
    (lambda m: m.links.add(peer=""), "report.links"),
])
def test_malformed_reports(mutate: object, field: str) -> None:
    msg = report_to_proto(sample_report())
    mutate(msg)  # type: ignore[operator]
    with pytest.raises(ConversionError) as err:
        report_from_proto(msg)
    assert err.value.field.startswith(field)


def test_state_round_trip_keeps_what_the_orchestrator_needs() -> None:
    inv = NodeInventory((NodeState(A, Trust.TRUSTED, 1 << 30, 1e12, address="h:1"),
                         NodeState(B, Trust.UNTRUSTED, 1 << 30, 5e11, trusted_by=(A,))))
    mon = Monitor(MonitorConfig(), inv.ids, now=0.0)
    mon.ingest(sample_report(), now=1.0)
    env = mon.snapshot(now=2.0)
    msg = state_to_proto(env, inv, version=7, wall_time=1000.0, report_interval_s=1.0,
                         dead_after_s=3.0, committed_epochs={A: 3})
    back = environment_from_proto(mpb.EnvironmentState.FromString(msg.SerializeToString()))
    a = back.nodes[A]
    assert back.now == 1000.0 and a.last_seen == pytest.approx(999.0)  # wall clock, same age
    assert a.decode == env.nodes[A].decode and a.prefill == env.nodes[A].prefill
    assert a.gpu_utilization == pytest.approx(0.7) and a.own_load == env.nodes[A].own_load
    assert a.decode_background == env.nodes[A].decode_background > 0
    assert back.nodes[B].reports == 0 and back.nodes[B].last_seen is None
    assert back.latency_ewma_s == env.latency_ewma_s and back.sla_hit_rate == 1.0
    assert back.link(A, B) is not None and back.link(A, B).bandwidth_bps == 1e7  # type: ignore[union-attr]
    # The planner's input: the monitor's own, measured head time included.
    inv2 = inventory_from_state_proto(msg)
    assert [n.trust for n in inv2] == [Trust.TRUSTED, Trust.UNTRUSTED]
    assert inv2.get(B).trusted_by == (A,)  # type: ignore[union-attr]
    assert back.to_cluster_state(inv2) == env.to_cluster_state(inv)
    cluster = cluster_from_state_proto(msg)
    assert cluster.node(A).layer_seconds == ((0, 0.004), (1, 0.005), (Part.HEAD, 0.003))
    assert cluster.links[0].rtt_s == 0.05
    assert msg.nodes[0].committed_epoch == 3 and msg.version == 7


def test_inventory_and_profile_files(tmp_path: Path) -> None:
    inv = tmp_path / "inv.yaml"
    inv.write_text("nodes:\n  - {id: x, trust: trusted, memory: 2GiB, flops: 1e12}\n"
                   "  - {node_id: y, memory_bytes: 5, layer_seconds: {0: 0.1}}\n")
    nodes = load_inventory(inv)
    assert nodes.get(NodeId("x")).memory_bytes == 2 << 30  # type: ignore[union-attr]
    assert nodes.get(NodeId("y")).trust is Trust.UNTRUSTED  # type: ignore[union-attr]
    assert parse_bytes("1.5 MB") == 1_500_000 and parse_bytes(7) == 7
    for bad in ("nodes: 3", "- {id: x}", "- {id: x, flops: 1}\n- {id: x, flops: 1}",
                "- {id: x, flops: 1, trust: maybe}", "- {id: x, flops: 1, memory: lots}"):
        inv.write_text(bad)
        with pytest.raises(ConfigFileError, match=str(inv)):
            load_inventory(inv)
    prof = tmp_path / "p.json"
    cost = {"weight_bytes": 1, "flops_per_token": 2.0}
    prof.write_text(json.dumps({"name": "m", "layers": [cost], "embed": cost, "head": cost,
                                "activation_bytes_per_token": 8, "family": "extra keys ok"}))
    assert load_profile(prof).num_layers == 1
    prof.write_text("{}")
    with pytest.raises(ConfigFileError):
        load_profile(prof)
