"""SplitReviser.Revise over a real in-process gRPC server: a plan with its cost
and solver statistics, and INVALID_ARGUMENT naming the field for bad input."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from edgesplit.rpc.config import ServiceConfig
from edgesplit.rpc.errors import error_details, maps_errors
from edgesplit.rpc.server import Registration, create_server
from edgesplit.rpc.transport import LOOPBACK_PLAINTEXT, Transport
from edgesplit.v1 import common_pb2 as c
from edgesplit.v1 import split_reviser_pb2 as sr
from edgesplit.v1 import split_reviser_pb2_grpc as sr_grpc
from services.split_reviser.servicer import SplitReviserServicer

LAYERS = 8


def _request() -> sr.ReviseRequest:
    layer = c.LayerCost(weight_bytes=50_000_000, flops_per_token=1e8, kv_bytes_per_token=1024)
    profile = c.ModelProfile(name="m", digest="d", layers=[layer] * LAYERS,
                             embed=c.LayerCost(weight_bytes=10_000_000, flops_per_token=1e5),
                             head=c.LayerCost(weight_bytes=10_000_000, flops_per_token=1e7),
                             activation_bytes_per_token=4096)
    nodes = [c.NodeState(node_id="dev", trust=c.TRUST_TRUSTED, memory_bytes=8 << 30,
                         flops_per_s=1e11, alive=True),
             c.NodeState(node_id="gpu", trust=c.TRUST_UNTRUSTED, memory_bytes=48 << 30,
                         flops_per_s=1e13, alive=True)]
    links = [c.LinkState(src=a, dst=b, rtt_s=0.002, bandwidth_bps=1e9)
             for a, b in (("dev", "gpu"), ("gpu", "dev"))]
    return sr.ReviseRequest(state=c.ClusterState(nodes=nodes, links=links), profile=profile,
                            workload=c.Workload(), mode=c.PLAN_MODE_RESPLIT, entries=["dev"])


@pytest.fixture
async def stub() -> AsyncIterator[sr_grpc.SplitReviserStub]:
    server = await create_server(ServiceConfig(insecure=True), [Registration(
        sr_grpc.add_SplitReviserServicer_to_server, SplitReviserServicer(),
        "edgesplit.v1.SplitReviser")])
    channel = Transport(LOOPBACK_PLAINTEXT).aio_channel(f"127.0.0.1:{server.port}")
    yield sr_grpc.SplitReviserStub(channel)
    await channel.close()
    await server.server.stop(0)


async def test_revise_returns_plan_cost_and_stats(stub: sr_grpc.SplitReviserStub) -> None:
    reply = await stub.Revise(_request(), timeout=30)
    assert reply.feasible and reply.stats.optimal and reply.stats.nodes == 2
    route = reply.plan.routes[0]
    assert route.entry == "dev" and route.segments[0].node_id == "dev"
    assert sum(s.end - s.start for s in route.segments) == LAYERS
    assert any(s.node_id == "gpu" for s in route.segments)  # 100x faster, 2 ms away
    assert reply.plan.epoch == 1 and reply.cost.latency_s > 0
    # Its own plan as the current one: same cost under the same state.
    again = _request()
    again.current.CopyFrom(reply.plan)
    again.mode = c.PLAN_MODE_PLACEMENT
    second = await stub.Revise(again, timeout=30)
    assert second.current_cost.total == pytest.approx(reply.cost.total)
    assert second.plan.epoch == 2


@pytest.mark.parametrize("field", ["state.links[0].dst", "state.nodes[1].flops_per_s",
                                   "current.routes", "entries[0]", "state.nodes[0].utilization"])
async def test_bad_requests_name_the_field(stub: sr_grpc.SplitReviserStub, field: str) -> None:
    req = _request()
    if field == "state.links[0].dst":
        req.state.links[0].dst = "ghost"
    elif field == "state.nodes[1].flops_per_s":
        req.state.nodes[1].flops_per_s = -1
    elif field == "current.routes":
        req.current.CopyFrom(c.Plan(epoch=1, routes=[c.Route(entry="dev", segments=[
            c.Segment(node_id="dev", start=0, end=3, parts=[c.PART_EMBED]),
            c.Segment(node_id="dev", start=3, end=3, parts=[c.PART_HEAD])])]))
    elif field == "entries[0]":
        req.entries[0] = "nobody"
    else:
        req.state.nodes[0].utilization = 1.5
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Revise(req, timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in err.value.details()
    # ... and in the status details, for a program: BadRequest names the field.
    details = error_details(err.value)
    assert details.fields == (field,)
    assert (details.domain, details.reason) == ("edgesplit", "INVALID_ARGUMENT")


@pytest.mark.parametrize("grow, field", [
    (lambda r: r.state.nodes.extend([r.state.nodes[0]] * 3), "state.nodes"),
    (lambda r: r.profile.layers.extend([r.profile.layers[0]] * 8), "profile.layers"),
    (lambda r: r.entries.extend(["dev"] * 2), "entries"),
])
async def test_oversized_instances_are_refused_before_solving(grow, field) -> None:
    from services.split_reviser.servicer import Limits

    server = await create_server(ServiceConfig(insecure=True), [Registration(
        sr_grpc.add_SplitReviserServicer_to_server,
        SplitReviserServicer(Limits(max_nodes=4, max_layers=LAYERS + 4, max_routes=2)),
        "edgesplit.v1.SplitReviser")])
    channel = Transport(LOOPBACK_PLAINTEXT).aio_channel(f"127.0.0.1:{server.port}")
    try:
        stub = sr_grpc.SplitReviserStub(channel)
        assert (await stub.Revise(_request(), timeout=30)).feasible  # within the limits
        request = _request()
        grow(request)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Revise(request, timeout=30)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert field in err.value.details()
    finally:
        await channel.close()
        await server.server.stop(0)


class _Proxy(sr_grpc.SplitReviserServicer):
    """A servicer that asks another server, as the entry asks the orchestrator."""

    def __init__(self, stub: sr_grpc.SplitReviserStub) -> None:
        self.stub = stub

    @maps_errors
    async def Revise(self, request: sr.ReviseRequest, context: object) -> sr.ReviseResponse:
        return await self.stub.Revise(request, timeout=30)


async def test_a_dependencys_error_details_pass_through(stub: sr_grpc.SplitReviserStub) -> None:
    proxy = await create_server(ServiceConfig(insecure=True), [Registration(
        sr_grpc.add_SplitReviserServicer_to_server, _Proxy(stub), "edgesplit.v1.SplitReviser")])
    channel = Transport(LOOPBACK_PLAINTEXT).aio_channel(f"127.0.0.1:{proxy.port}")
    try:
        req = _request()
        req.entries[0] = "nobody"
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await sr_grpc.SplitReviserStub(channel).Revise(req, timeout=30)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_details(err.value).fields == ("entries[0]",)  # not lost on the way
    finally:
        await channel.close()
        await proxy.server.stop(0)
