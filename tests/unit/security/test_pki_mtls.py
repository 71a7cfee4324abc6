"""Material from ``edgesplit pki init`` works for gRPC mTLS as laid out: a service
serves with its directory, a node calls with its own, and the server sees the
node's identity (in-process server on 127.0.0.1 port 0)."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from edgesplit.rpc.server import create_server
from edgesplit.rpc.transport import Transport, TransportSettings
from edgesplit.security.pki import init_pki
from services.monitor.config import MonitorConfig


def settings(d: Path) -> TransportSettings:
    return TransportSettings(str(d / "ca.pem"), str(d / "tls.pem"), str(d / "tls.key"))


async def test_node_calls_a_service_with_its_own_certificate(tmp_path: Path) -> None:
    init_pki(tmp_path / "pki", nodes=["node-a"])
    other = tmp_path / "other"
    init_pki(other, nodes=["node-a"])  # same names, another CA
    svc = tmp_path / "pki" / "services" / "monitor"
    config = MonitorConfig(tls_cert=str(svc / "tls.pem"), tls_key=str(svc / "tls.key"),
                           tls_ca=str(svc / "ca.pem"))
    server = await create_server(config, [])
    await server.set_serving(True)
    target = f"127.0.0.1:{server.port}"
    try:
        node = Transport(settings(tmp_path / "pki" / "nodes" / "node-a"))
        async with node.aio_channel(target) as ch:
            reply = await health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        foreign = Transport(settings(other / "nodes" / "node-a"))
        async with foreign.aio_channel(target) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(),
                                                           timeout=5)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await server.server.stop(0)
