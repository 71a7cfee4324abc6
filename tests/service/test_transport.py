"""The transport's retry policy against a real server: idempotent methods are
retried on UNAVAILABLE only, a few times, inside the call's deadline; nothing
else is ever retried."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from edgesplit.rpc.config import ServiceConfig
from edgesplit.rpc.server import Registration, create_server
from edgesplit.rpc.transport import (
    IDEMPOTENT,
    LOOPBACK_PLAINTEXT,
    MAX_ATTEMPTS_CAP,
    Transport,
    TransportSettings,
    retry_service_config,
)
from edgesplit.v1 import broadcaster_pb2 as bpb
from edgesplit.v1 import broadcaster_pb2_grpc as bpb_grpc
from edgesplit.v1 import node_agent_pb2 as na
from edgesplit.v1 import node_agent_pb2_grpc as na_grpc


class Scripted(na_grpc.NodeAgentServicer, bpb_grpc.BroadcasterServicer):
    """Answers each method with the next scripted failure code, then succeeds."""

    def __init__(self) -> None:
        self.script: dict[str, list[grpc.StatusCode]] = {}
        self.calls: dict[str, int] = {}

    async def _answer(self, method: str, context: Any, reply: Any) -> Any:
        self.calls[method] = self.calls.get(method, 0) + 1
        codes = self.script.get(method, [])
        if codes:
            await context.abort(codes.pop(0), "scripted")
        return reply

    async def GetInfo(self, request: Any, context: Any) -> na.GetInfoResponse:
        return await self._answer("GetInfo", context, na.GetInfoResponse(node_id="n"))

    async def Commit(self, request: Any, context: Any) -> na.CommitResponse:
        return await self._answer("Commit", context, na.CommitResponse())

    async def Apply(self, request: Any, context: Any) -> bpb.ApplyResponse:
        return await self._answer("Apply", context, bpb.ApplyResponse())


@pytest.fixture
async def node() -> AsyncIterator[tuple[str, Scripted]]:
    servicer = Scripted()
    server = await create_server(ServiceConfig(insecure=True), [
        Registration(na_grpc.add_NodeAgentServicer_to_server, servicer, "edgesplit.v1.NodeAgent"),
        Registration(bpb_grpc.add_BroadcasterServicer_to_server, servicer,
                     "edgesplit.v1.Broadcaster")])
    yield f"127.0.0.1:{server.port}", servicer
    await server.server.stop(0)


async def call(address: str, method: str, transport: Transport | None = None,
               timeout: float = 5) -> grpc.StatusCode:
    """The status one call of ``method`` ends with."""
    requests = {"GetInfo": na.GetInfoRequest(), "Commit": na.CommitRequest(epoch=1),
                "Apply": bpb.ApplyRequest()}
    async with (transport or Transport(LOOPBACK_PLAINTEXT)).aio_channel(address) as ch:
        stub: Any = bpb_grpc.BroadcasterStub(ch) if method == "Apply" \
            else na_grpc.NodeAgentStub(ch)
        try:
            await getattr(stub, method)(requests[method], timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


U, FP = grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.FAILED_PRECONDITION


@pytest.mark.parametrize(("method", "script", "attempts", "code", "calls"), [
    ("GetInfo", [U, U], 4, grpc.StatusCode.OK, 3),  # idempotent: retried on UNAVAILABLE
    ("Commit", [FP], 4, FP, 1),  # any other code is the answer
    ("Commit", [U] * 9, 3, U, 3),  # attempts are capped
    ("Apply", [U], 4, U, 1),  # would start a rollout twice: never retried
])
async def test_retry_policy(node: tuple[str, Scripted], method: str,
                            script: list[grpc.StatusCode], attempts: int,
                            code: grpc.StatusCode, calls: int) -> None:
    address, servicer = node
    servicer.script[method] = list(script)
    transport = Transport(TransportSettings(retry_attempts=attempts, insecure=True))
    assert await call(address, method, transport) == code
    assert servicer.calls[method] == calls


async def test_retries_stay_inside_the_calls_deadline(node: tuple[str, Scripted]) -> None:
    address, servicer = node
    servicer.script["GetInfo"] = [U] * 9
    # Backoff between tries outlasts the deadline: the deadline ends the call.
    start = time.monotonic()
    code = await call(address, "GetInfo", Transport(TransportSettings(retry_attempts=5, insecure=True)), 0.08)
    assert time.monotonic() - start < 2.0
    assert code in (grpc.StatusCode.DEADLINE_EXCEEDED, U)
    assert servicer.calls["GetInfo"] < 5


def test_only_idempotent_methods_may_be_asked_for() -> None:
    with pytest.raises(ValueError, match="Link"):
        Transport(LOOPBACK_PLAINTEXT).aio_channel("127.0.0.1:9", retry=["edgesplit.v1.NodeAgent/Link"])


def test_service_config_names_each_method_and_caps_attempts() -> None:
    config = json.loads(retry_service_config(
        ["edgesplit.v1.NodeAgent/Commit", "edgesplit.v1.Monitor"], max_attempts=9))
    (method,) = config["methodConfig"]
    assert method["name"] == [{"service": "edgesplit.v1.Monitor"},
                              {"service": "edgesplit.v1.NodeAgent", "method": "Commit"}]
    assert method["retryPolicy"]["maxAttempts"] == MAX_ATTEMPTS_CAP
    assert method["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]
    assert retry_service_config(["edgesplit.v1.NodeAgent/Commit"], max_attempts=1) == ""


def test_every_idempotent_method_exists_in_the_contract() -> None:
    """A renamed method must not silently lose its retries."""
    import importlib
    import pkgutil

    from google.protobuf import descriptor_pool
    from grpc_health.v1 import health_pb2  # noqa: F401 - registers grpc.health.v1

    import edgesplit.v1

    for mod in pkgutil.iter_modules(edgesplit.v1.__path__):
        if mod.name.endswith("_pb2"):
            importlib.import_module(f"edgesplit.v1.{mod.name}")
    pool = descriptor_pool.Default()
    for name in sorted(IDEMPOTENT):
        service, _, method = name.partition("/")
        found = pool.FindServiceByName(service)
        assert not method or found.FindMethodByName(method) is not None, name
