"""Every method of every service, attacked on a real test bed with mTLS on.

The whole stack runs as the scenarios run it (monitor, split reviser,
broadcaster, a static orchestrator, three node agents, a tiny model), each
process with its own certificate. The methods come from the generated
descriptors and must match the authorisation table (``rpc/authz.POLICY``)
exactly, so a new RPC cannot be left out of either. For each method:

* no usable certificate (plaintext, or a certificate from another CA naming
  a real identity) never gets past the TLS handshake, which requires and
  verifies a client certificate (UNAVAILABLE: nothing reaches the server), and
  a certificate of this CA that names no edgesplit identity gets
  UNAUTHENTICATED;
* every role the table does not list for it gets PERMISSION_DENIED;
* malformed bytes, sent as a role that may call it, get a clean status (not
  INTERNAL or UNKNOWN, no exception text), and the server keeps serving.

Afterwards every node is on the same epoch with the same segments, and a
greedy Generate returns the same tokens as before the attacks.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from grpc_health.v1 import health_pb2

from edgesplit.bedpki import ADMIN, CLIENT, service
from edgesplit.rpc.authz import POLICY
from edgesplit.rpc.transport import Transport, TransportSettings
from edgesplit.scenario.runner import Run, default_show
from edgesplit.scenario.spec import parse_scenario
from edgesplit.security.identity import Identity, Role
from edgesplit.security.pki import init_pki
from edgesplit.security.tls import _load_ca, _new_leaf, _write_key
from edgesplit.v1 import (
    broadcaster_pb2,
    inference_pb2,
    monitor_pb2,
    node_agent_pb2,
    orchestrator_pb2,
    split_reviser_pb2,
    testbed_admin_pb2,
)
from tests.e2e.test_adaptive import SCENARIO as E2E_SCENARIO

# The end-to-end stack's scenario (three trusted nodes, a tiny seeded model).
SCENARIO = {**E2E_SCENARIO, "name": "attack"}
PROMPT = [5, 17, 42, 99, 7, 3]
MODULES = (broadcaster_pb2, inference_pb2, monitor_pb2, node_agent_pb2, orchestrator_pb2,
           split_reviser_pb2, testbed_admin_pb2, health_pb2)
# Which process of the bed serves each service ("node": a node agent that is
# not the entry; the entry serves Inference). Reflection is off everywhere.
SERVED_BY = {
    "edgesplit.v1.Broadcaster": "broadcaster",
    "edgesplit.v1.Inference": "entry",
    "edgesplit.v1.Monitor": "monitor",
    "edgesplit.v1.NodeAgent": "edge-a",
    "edgesplit.v1.Orchestrator": "orchestrator",
    "edgesplit.v1.SplitReviser": "split_reviser",
    "edgesplit.v1.TestbedAdmin": "edge-a",
    "grpc.health.v1.Health": "edge-a",
}
UNSERVED = {"grpc.reflection.v1alpha.ServerReflection", "grpc.reflection.v1.ServerReflection"}
# One identity per role (a node: a peer of the route, not the one called).
CALLERS = {Role.NODE: Identity(Role.NODE, "edge-b"), Role.CLIENT: CLIENT, Role.ADMIN: ADMIN,
           **{r: service(r) for r in (Role.ORCHESTRATOR, Role.BROADCASTER, Role.MONITOR,
                                      Role.SPLIT_REVISER, Role.GATEWAY)}}
DEADLINE_S = 10.0


@functools.cache
def methods() -> dict[str, tuple[bool, bool]]:
    """``/package.Service/Method`` -> (client streaming, server streaming), from
    the generated descriptors."""
    out = {}
    for module in MODULES:
        for svc in module.DESCRIPTOR.services_by_name.values():
            for m in svc.methods:
                out[f"/{svc.full_name}/{m.name}"] = (m.client_streaming, m.server_streaming)
    return out


def _service(method: str) -> str:
    return method.split("/")[1]


# ---- the bed --------------------------------------------------------------------------
class Bed:
    def __init__(self, run: Run, tmp: Path) -> None:
        assert run.bed is not None and run.pki is not None
        self.run, self.bed, self.pki = run, run.bed, run.pki
        self.tmp = tmp
        self._channels: dict[tuple[str, str], grpc.Channel] = {}
        self.before = (self.view(), self.greedy())  # what the attacks must not change

    def address(self, process: str) -> str:
        if process in self.run.addr:
            return self.run.addr[process]
        return self.bed.node(process).address

    def channel(self, who: Identity | str, process: str) -> grpc.Channel:
        """A channel to ``process`` as ``who`` (an identity, or one of the
        credential-less kinds of :meth:`_anonymous`), kept for the module."""
        key = (str(who), process)
        if key not in self._channels:
            transport = (self.pki.transport(who) if isinstance(who, Identity)
                         else self._anonymous(who))
            self._channels[key] = transport.sync_channel(self.address(process), retry=())
        return self._channels[key]

    def _anonymous(self, kind: str) -> Transport:
        ca = self.pki.component(ADMIN).ca
        if kind == "plaintext":
            return Transport(TransportSettings(insecure=True))
        if kind == "foreign-ca":  # the same identity, issued by a CA the bed does not trust
            other = self.tmp / "foreign"
            init_pki(other, admins=[ADMIN.name])
            d = other / "admins" / ADMIN.name
            return Transport(TransportSettings(str(ca), str(d / "tls.pem"), str(d / "tls.key")))
        if kind == "no-identity":  # signed by the bed's CA, but no spiffe://edgesplit URI
            d = self.tmp / "anonymous"
            if not (d / "tls.pem").exists():
                d.mkdir(parents=True, exist_ok=True)
                root = self.pki.root / "ca"
                ca_cert, ca_key = _load_ca(root / "ca.pem", root / "ca.key")
                cert, key = _new_leaf("anonymous", ca_cert, ca_key, dt.datetime.now(dt.UTC), 1,
                                      [x509.DNSName("anonymous")])
                _write_key(d / "tls.key", key)
                (d / "tls.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
            return Transport(TransportSettings(str(ca), str(d / "tls.pem"), str(d / "tls.key")))
        raise ValueError(kind)

    def call(self, who: Identity | str, method: str, payload: bytes) -> tuple[grpc.StatusCode, str]:
        """The status of one raw call; a streamed answer counts as served once
        its first message arrives (the stream is then cancelled)."""
        client_stream, server_stream = methods()[method]
        ch = self.channel(who, SERVED_BY[_service(method)])
        request: Any = iter([payload]) if client_stream else payload
        kind = {(False, False): ch.unary_unary, (False, True): ch.unary_stream,
                (True, False): ch.stream_unary, (True, True): ch.stream_stream}[
                    (client_stream, server_stream)]
        try:
            reply = kind(method)(request, timeout=DEADLINE_S)
            if server_stream:
                next(reply, None)
                reply.cancel()
            return grpc.StatusCode.OK, ""
        except grpc.RpcError as exc:
            return exc.code(), exc.details() or ""

    def view(self) -> dict[str, tuple[int, bytes]]:
        """Each node's committed epoch and segments."""
        out = {}
        for n in self.bed.nodes:
            info = self.bed.info(n.node_id)
            out[n.node_id] = (info.committed_epoch,
                              b"".join(s.SerializeToString(deterministic=True)
                                       for s in info.segments))
        return out

    def greedy(self) -> list[int]:
        return [r.token_id for r in self.bed.generate("entry", token_ids=PROMPT,
                                                       max_new_tokens=8)]

    def serving(self, process: str) -> bool:
        from grpc_health.v1 import health_pb2_grpc

        reply = health_pb2_grpc.HealthStub(self.channel(ADMIN, process)).Check(
            health_pb2.HealthCheckRequest(), timeout=DEADLINE_S)
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    def close(self) -> None:
        for ch in self._channels.values():
            ch.close()


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    tmp = tmp_path_factory.mktemp("attack")
    run = Run(parse_scenario(SCENARIO), "static", 0, tmp / "run", default_show)
    (tmp / "run").mkdir()
    try:
        run.start()
        asyncio.run(run.wait_for_plan())
        b = Bed(run, tmp)
        yield b
        b.close()
    finally:
        run.stop()


# ---- the table and the descriptors agree ------------------------------------------------
def test_every_method_is_in_the_table_and_every_service_is_on_the_bed() -> None:
    served = set(methods())
    listed = {m for m in POLICY if _service(m) not in UNSERVED}
    assert served == listed, (sorted(served - listed), sorted(listed - served))
    assert {_service(m) for m in served} == set(SERVED_BY)


def test_the_bed_runs_mtls_everywhere(bed: Bed) -> None:
    assert bed.bed.secure
    for launch in [*(s.launch for s in bed.run.services),
                   *(bed.bed.commands[n.node_id] for n in bed.bed.nodes)]:
        cmd = launch.cmd if hasattr(launch, "cmd") else launch["cmd"]
        assert "--insecure" not in cmd and "--tls-cert" in cmd, cmd


# ---- the attacks ------------------------------------------------------------------------
GUARDED = sorted(m for m, roles in POLICY.items()
                 if _service(m) not in UNSERVED and roles != frozenset(Role))


@pytest.mark.parametrize("kind", ["plaintext", "foreign-ca"])
def test_without_a_trusted_certificate_nothing_gets_past_the_handshake(bed: Bed,
                                                                      kind: str) -> None:
    got = {m: bed.call(kind, m, b"")[0] for m in GUARDED}
    assert set(got.values()) == {grpc.StatusCode.UNAVAILABLE}, got


def test_a_certificate_without_identity_is_unauthenticated_everywhere(bed: Bed) -> None:
    got = {m: bed.call("no-identity", m, b"") for m in GUARDED}
    wrong = {m: g for m, g in got.items() if g[0] != grpc.StatusCode.UNAUTHENTICATED}
    assert not wrong, wrong


def test_every_unlisted_role_is_denied_every_method(bed: Bed) -> None:
    wrong = {}
    calls = 0
    for m in GUARDED:
        for role, who in CALLERS.items():
            if role in POLICY[m]:
                continue
            calls += 1
            code, details = bed.call(who, m, b"")
            if code != grpc.StatusCode.PERMISSION_DENIED:
                wrong[(m, role.value)] = (code, details)
    assert not wrong, wrong
    assert calls > 3 * len(GUARDED)  # most methods have several roles to refuse


MALFORMED = [b"\xff" * 8,  # a truncated varint: never parses
             bytes(random.Random(7).randrange(256) for _ in range(256))]


def _clean(code: grpc.StatusCode, details: str) -> bool:
    leaky = ("Traceback", "<class", "Exception", "Error parsing", "File \"")
    return code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN) and \
        not any(s in details for s in leaky)


@pytest.mark.parametrize("payload", MALFORMED, ids=["truncated", "random"])
def test_malformed_bytes_get_a_clean_status_and_the_servers_keep_serving(
        bed: Bed, payload: bytes) -> None:
    bad = {}
    for m in sorted(methods()):
        allowed = POLICY[m]
        who = next(CALLERS[r] for r in CALLERS if r in allowed)
        code, details = bed.call(who, m, payload)
        if not _clean(code, details):
            bad[m] = (code, details)
    assert not bad, bad
    for process in sorted(set(SERVED_BY.values())):
        assert bed.serving(process), process


def _generate(bed: Bed, request: inference_pb2.GenerateRequest) -> grpc.StatusCode:
    from edgesplit.v1 import inference_pb2_grpc

    stub = inference_pb2_grpc.InferenceStub(bed.channel(CLIENT, "entry"))
    try:
        for _ in stub.Generate(request, timeout=DEADLINE_S):
            pass
        return grpc.StatusCode.OK
    except grpc.RpcError as exc:
        assert _clean(exc.code(), exc.details() or ""), (exc.code(), exc.details())
        return exc.code()


def test_a_malicious_clients_requests_are_refused_cleanly(bed: Bed) -> None:
    """What a client with a valid certificate may try at the entry: an 8 MB
    prompt (refused by size before any tokenising, within the deadline), an
    over-long or odd request_id, a temperature so small sampling would divide
    by zero, token ids beyond the vocabulary; none is INTERNAL or leaks text."""
    big = _generate(bed, inference_pb2.GenerateRequest(prompt="x" * (8 << 20),
                                                       max_new_tokens=4))
    assert big in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED)
    for rid in ("r" * 300, "../../etc", "a b"):
        req = inference_pb2.GenerateRequest(prompt="hello", max_new_tokens=2, request_id=rid)
        assert _generate(bed, req) == grpc.StatusCode.INVALID_ARGUMENT, rid
    tiny = inference_pb2.GenerateRequest(prompt="hello", max_new_tokens=2)
    tiny.sampling.temperature = 1e-300
    assert _generate(bed, tiny) in (grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT)
    huge = inference_pb2.GenerateRequest(max_new_tokens=2)
    huge.token_ids.ids.extend([10**9, 3])
    assert _generate(bed, huge) == grpc.StatusCode.INVALID_ARGUMENT


def test_the_bed_is_unchanged_afterwards(bed: Bed) -> None:
    view, tokens = bed.before
    assert bed.view() == view
    assert bed.greedy() == tokens
