"""Every service starts as a real process, reports SERVING, answers reflection
(when enabled) with its own name, exposes metrics and stops cleanly on SIGTERM."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from edgesplit.bedpki import ADMIN
from edgesplit.rpc.transport import LOOPBACK_PLAINTEXT, Transport
from tests.conftest import start_service

SERVICES = {
    "monitor": ["edgesplit.v1.Monitor"],
    "orchestrator": ["edgesplit.v1.Orchestrator"],
    "split_reviser": ["edgesplit.v1.SplitReviser"],
    "broadcaster": ["edgesplit.v1.Broadcaster"],
    "node_agent": ["edgesplit.v1.NodeAgent", "edgesplit.v1.Inference"],
}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _reflected_services(channel: grpc.Channel) -> set[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    responses = stub.ServerReflectionInfo(iter([request]), timeout=5)
    return {s.name for r in responses for s in r.list_services_response.service}


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_service_lifecycle(name: str, tmp_path: Path) -> None:
    metrics_port = _free_port()
    sp = start_service(name, tmp_path, ["--metrics-listen", f"127.0.0.1:{metrics_port}",
                                        "--reflection"])
    try:
        # It serves mTLS with its own certificate; reflection is for admins.
        with sp.transport(ADMIN).sync_channel(sp.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for service in ["", *SERVICES[name]]:
                reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
                assert reply.status == health_pb2.HealthCheckResponse.SERVING
            with pytest.raises(grpc.RpcError) as err:
                health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=5)
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
            names = _reflected_services(channel)
            assert set(SERVICES[name]) <= names
            assert "grpc.health.v1.Health" in names
        body = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read()
        assert b"edgesplit_rpc_server_handled_total" in body
    finally:
        start = time.monotonic()
        code = sp.stop(timeout=10)
        elapsed = time.monotonic() - start
    assert code == 0, sp.log.read_text()[-2000:]
    assert elapsed < 5.0


async def test_a_taken_port_is_refused_not_shared() -> None:
    """Without SO_REUSEPORT a second server cannot silently split a port's traffic."""
    from edgesplit.rpc.config import ServiceConfig
    from edgesplit.rpc.server import create_server

    first = await create_server(ServiceConfig(listen="127.0.0.1:0", insecure=True), [])
    try:
        with pytest.raises(RuntimeError, match="[Bb]ind"):
            await create_server(ServiceConfig(listen=f"127.0.0.1:{first.port}", insecure=True), [])
    finally:
        await first.server.stop(0)


async def test_reflection_is_off_unless_enabled() -> None:
    from edgesplit.rpc.config import ServiceConfig
    from edgesplit.rpc.server import create_server

    running = await create_server(ServiceConfig(listen="127.0.0.1:0", insecure=True), [])
    try:
        async with Transport(LOOPBACK_PLAINTEXT).aio_channel(f"127.0.0.1:{running.port}") as channel:
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            call = stub.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                async for _ in call:
                    pass
            assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        await running.server.stop(0)
