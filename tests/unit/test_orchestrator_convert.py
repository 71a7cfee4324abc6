"""The orchestrator's boundary: what it decodes from the monitor and exchanges
with the split reviser is what the in-process (simulator) path computes."""

from __future__ import annotations

from edgesplit.core import control as ctl
from edgesplit.core.environment import EnvironmentState, LinkAssumption
from edgesplit.core.inventory import NodeInventory
from edgesplit.core.monitor import Monitor, MonitorConfig
from edgesplit.core.planner import solve
from edgesplit.core.reports import LinkObservation, NodeReport, ResourceSample
from edgesplit.core.types import LayerCost, Mode, ModelProfile, NodeId, NodeState, Trust
from edgesplit.rpc.convert_monitor import state_to_proto
from edgesplit.v1 import monitor_pb2 as mpb
from services.orchestrator import convert as oc
from services.split_reviser.servicer import decode, encode

A, B, C = NodeId("a"), NodeId("b"), NodeId("c")
INVENTORY = NodeInventory((NodeState(A, Trust.TRUSTED, 1 << 30, 1e12, address="h:1"),
                           NodeState(B, Trust.TRUSTED, 1 << 30, 2e12, address="h:2"),
                           NodeState(C, Trust.UNTRUSTED, 1 << 30, 4e12, trusted_by=(A,))))
LAYER = LayerCost(1 << 20, 1e9, 256)
PROFILE = ModelProfile("m", (LAYER,) * 4, LAYER, LAYER, 512, "digest")
CONFIG = ctl.ControlConfig(entries=(A,))


def environment() -> EnvironmentState:
    """a and b report; only a -> b is measured, c never reported."""
    m = Monitor(MonitorConfig(), INVENTORY.ids, now=0.0)
    m.ingest(NodeReport(A, 0, 0.0, ResourceSample(0.2, 1, 2),
                        links=(LinkObservation(B, 0.004, 3e8),)), now=1.0)
    m.ingest(NodeReport(B, 0, 0.0, ResourceSample(0.5, 1, 2)), now=1.0)
    return m.snapshot(2.0)


def test_getstate_decodes_to_the_in_process_observation() -> None:
    env = environment()
    msg = state_to_proto(env, INVENTORY, version=1, wall_time=5000.0, report_interval_s=1.0,
                         dead_after_s=3.0, profile=PROFILE)
    wire = mpb.EnvironmentState.FromString(msg.SerializeToString())
    remote = oc.observation_from_proto(wire, CONFIG)
    local = ctl.observe_environment(env, INVENTORY, PROFILE, CONFIG)
    assert remote.cluster == local.cluster and remote.profile == local.profile
    # One rule for what nobody measured: b -> a, assumed, among the live nodes;
    # c is within its grace period, so links to it are assumed as well.
    assert remote.unmeasured == local.unmeasured == 5  # all but a -> b
    assert remote.cluster.link(A, B) == local.cluster.link(A, B)  # measured: as it was
    assert remote.cluster.link(A, C) is not None and remote.cluster.link(C, B) is not None
    assumed = remote.cluster.link(B, A)
    assert assumed is not None and assumed.bandwidth_bps == LinkAssumption().bandwidth_bps
    assert remote.env.nodes[B].cpu_utilization == local.env.nodes[B].cpu_utilization


def test_revise_round_trips_through_the_split_revisers_codec() -> None:
    obs = ctl.observe_environment(environment(), INVENTORY, PROFILE, CONFIG)
    first = ctl.step(obs, None, ctl.ControlHistory(first_heard_at=0.0), 100.0, CONFIG)
    assert isinstance(first, ctl.Revise)
    q = first.request
    args = decode(oc.revise_request_to_proto(q))
    assert (args["state"], args["profile"], args["workload"], args["mode"], args["weights"],
            args["current"], args["epoch"], tuple(args["entries"])) == (
        q.cluster, q.profile, q.workload, Mode.RESPLIT, q.weights, None, q.epoch, q.entries)
    result = solve(**args)
    answer = oc.answer_from_proto(encode(result, len(q.cluster.nodes), PROFILE.num_layers))
    assert answer == ctl.solve_request(q)
    assert answer.plan is not None and answer.plan.epoch == 1
