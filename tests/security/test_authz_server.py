"""The authorisation table enforced by a real mTLS server, and the plaintext rules.

Certificates come from ``edgesplit pki init``; the server is the split reviser
(Revise <- orchestrator, admin). A refused call never reaches the planner, and
the allowed caller's answer is the same before and after the attempts.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from edgesplit.errors import InsecureSetup
from edgesplit.rpc.authz import DENIED
from edgesplit.rpc.config import ServiceConfig
from edgesplit.rpc.server import Registration, create_server, is_loopback
from edgesplit.rpc.transport import Transport, TransportSettings
from edgesplit.security.pki import init_pki
from edgesplit.v1 import split_reviser_pb2_grpc as sr_grpc
from services.split_reviser.servicer import SplitReviserServicer
from tests.service.test_split_reviser import _request

METHOD = "/edgesplit.v1.SplitReviser/Revise"


def _settings(d: Path) -> TransportSettings:
    return TransportSettings(str(d / "ca.pem"), str(d / "tls.pem"), str(d / "tls.key"))


class Counting(SplitReviserServicer):
    calls = 0

    async def Revise(self, request, context):  # type: ignore[no-untyped-def]
        Counting.calls += 1
        return await super().Revise(request, context)


def _denied(reason: str) -> float:
    return DENIED.labels(METHOD, reason)._value.get()


async def test_only_the_listed_roles_reach_the_handler(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    init_pki(pki, nodes=["node-a"], clients=["app"], admins=["ops"])
    svc = pki / "services" / "split-reviser"
    config = ServiceConfig(tls_cert=str(svc / "tls.pem"), tls_key=str(svc / "tls.key"),
                           tls_ca=str(svc / "ca.pem"))
    server = await create_server(config, [Registration(
        sr_grpc.add_SplitReviserServicer_to_server, Counting(), "edgesplit.v1.SplitReviser")])
    target = f"127.0.0.1:{server.port}"

    async def revise(who: Path) -> tuple[grpc.StatusCode, object]:
        async with Transport(_settings(who)).aio_channel(target) as ch:
            try:
                return grpc.StatusCode.OK, await sr_grpc.SplitReviserStub(ch).Revise(
                    _request(), timeout=30)
            except grpc.aio.AioRpcError as exc:
                return exc.code(), None

    try:
        code, before = await revise(pki / "services" / "orchestrator")
        assert code == grpc.StatusCode.OK
        calls, wrong = Counting.calls, _denied("wrong_role")
        for who in (pki / "nodes" / "node-a", pki / "clients" / "app"):
            assert (await revise(who))[0] == grpc.StatusCode.PERMISSION_DENIED
        assert Counting.calls == calls  # refused before the handler ran
        assert _denied("wrong_role") == wrong + 2
        # No certificate at all: the TLS handshake itself fails.
        plain = Transport(TransportSettings(insecure=True))
        async with plain.aio_channel(target) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await sr_grpc.SplitReviserStub(ch).Revise(_request(), timeout=5)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        code, after = await revise(pki / "admins" / "ops")
        assert code == grpc.StatusCode.OK and after.plan == before.plan  # type: ignore[attr-defined]
    finally:
        await server.server.stop(0)


async def test_insecure_is_for_loopback_only(tmp_path: Path) -> None:
    with pytest.raises(InsecureSetup, match="not a loopback"):
        await create_server(ServiceConfig(listen="0.0.0.0:0", insecure=True), [])
    plain = Transport(TransportSettings(insecure=True))
    with pytest.raises(InsecureSetup, match="not a loopback"):
        plain.aio_channel("192.0.2.7:50051")
    plain.aio_channel("127.0.0.1:50051")  # allowed: only a loopback peer can answer
    with pytest.raises(InsecureSetup, match="mTLS needs"):
        await create_server(ServiceConfig(tls_cert=str(tmp_path / "c.pem")), [])


async def test_malformed_bytes_are_invalid_argument_without_parser_text() -> None:
    server = await create_server(ServiceConfig(insecure=True), [Registration(
        sr_grpc.add_SplitReviserServicer_to_server, Counting(), "edgesplit.v1.SplitReviser")])
    calls, malformed = Counting.calls, _denied("malformed")
    try:
        async with Transport(TransportSettings(insecure=True)).aio_channel(
                f"127.0.0.1:{server.port}") as ch:
            raw = ch.unary_unary(METHOD)  # bytes in, bytes out
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await raw(b"\xff" * 8, timeout=10)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert err.value.details() == f"{METHOD}: malformed"  # no parser or class names
            assert Counting.calls == calls and _denied("malformed") == malformed + 1
            reply = await sr_grpc.SplitReviserStub(ch).Revise(_request(), timeout=30)
            assert reply.plan.routes  # still serving
    finally:
        await server.server.stop(0)


async def test_a_server_with_neither_certificates_nor_insecure_refuses_to_start() -> None:
    for listen in ("127.0.0.1:0", "0.0.0.0:0"):  # no silent plaintext, not even on loopback
        with pytest.raises(InsecureSetup, match="--tls-cert.*--insecure"):
            await create_server(ServiceConfig(listen=listen), [])


def test_a_service_process_without_either_exits_naming_the_flags(tmp_path: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "services.split_reviser", "--listen",
                           "127.0.0.1:0", "--ready-file", str(tmp_path / "ready")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0
    assert "--tls-cert" in done.stderr and "--insecure" in done.stderr, done.stderr[-2000:]
    assert not (tmp_path / "ready").exists()  # it never served


@pytest.mark.parametrize("address, loopback", [
    ("127.0.0.1:5", True), ("127.3.4.5:5", True), ("localhost:5", True), ("[::1]:5", True),
    ("dns:///localhost:5", True), ("unix:/tmp/s", True), ("0.0.0.0:5", False),
    ("10.0.0.1:5", False), ("node-a:50051", False), ("[::]:5", False),
])
def test_loopback_addresses(address: str, loopback: bool) -> None:
    assert is_loopback(address) is loopback
