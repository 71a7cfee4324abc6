"""Frames an attacker (or a confused peer) could send a real agent over mTLS:
replays across restarts, a restarted sender's nonces, a hop the node does not
hold, NaN activations, a chunk flood, and messages naming another sender.

The agent under test is node-1 (layers [1, 3) of a real 4-layer model); the
test is node-0 (its certificate, its X25519 key) and node-2 is a recording
server with node-2's certificate (docs/architecture.md §12).
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import torch
from prometheus_client import REGISTRY

from edgesplit.core.route import route_from_cuts
from edgesplit.core.types import NodeId, Plan
from edgesplit.model.base import WireTensor
from edgesplit.model.wire import to_wire
from edgesplit.rpc.assignments import PeerInfo, ShardEntry, build_assignments, sign_assignment
from edgesplit.rpc.server import Registration, RunningServer, create_server
from edgesplit.security.channel import SALT_LEN, LinkKeys, LinkSecret
from edgesplit.security.header import FrameHeader
from edgesplit.security.keys import generate_agreement_key, load_agreement_key, public_bytes
from edgesplit.testbed import ensure_model, plan_from_cuts
from edgesplit.v1 import node_agent_pb2 as na
from edgesplit.v1 import node_agent_pb2_grpc as na_grpc
from services.node_agent.config import NodeAgentConfig
from services.node_agent.frame_guard import non_finite
from services.node_agent.frames import Reassembly, ReassemblyLimits
from tests.security.agent_ring import Ring, transport_of
from tests.service.link_peer import LinkEnd, Recorder

NODES = ("node-0", "node-1", "node-2", "node-3")


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("model")
    return ensure_model(base / "model", base / "shards", layers=4, hidden=64)


@dataclasses.dataclass
class Rig:
    ring: Ring  # node-1 only: the others are the test
    recorder: Recorder
    recorder_server: RunningServer
    keys: dict[str, Any]
    salt: bytes = dataclasses.field(default_factory=lambda: os.urandom(SALT_LEN))
    agent_salt: bytes = b""

    def assignment(self, plan: Plan) -> na.SignedEnvelope:
        m = self.ring.manifest
        shards = {s.name: ShardEntry(s.name, s.sha256, s.bytes) for s in m.shards}
        peers = {n: PeerInfo(n, self.ring.addresses.get(n, "127.0.0.1:9"), public_bytes(k))
                 for n, k in self.keys.items()}
        env = sign_assignment(build_assignments(plan, shards, peers, 4,
                                                int((time.time() + 600) * 1000))["node-1"],
                              self.ring.control)
        self.ring.envelopes[("node-1", plan.epoch)] = env
        return env

    async def commit(self, plan: Plan) -> None:
        await self.ring.prepare("node-1", self.assignment(plan))
        await self.ring.commit("node-1", plan.epoch)

    async def hello(self, as_node: str = "node-0", salt: bytes | None = None) -> bytes:
        reply = await self.ring.stub("node-1", "nodes", as_node).Hello(
            na.LinkHello(node_id=as_node, salt=salt or self.salt), timeout=5)
        self.agent_salt = reply.salt
        return reply.salt

    def link(self, as_node: str = "node-0") -> LinkEnd:
        return LinkEnd(self.ring.stub("node-1", "nodes", as_node))

    def keys_of(self, epoch: int = 1) -> LinkKeys:
        return LinkSecret.derive(self.keys["node-0"], self.keys["node-1"].public_key(), "node-0",
                               "node-1", epoch).keys(self.salt, self.agent_salt)

    def runner(self) -> Any:
        committed = self.ring.agents["node-1"].control.book.committed
        return next(r for r in committed.runners.values())


@pytest.fixture
async def rig(shards: Path, tmp_path: Path) -> AsyncIterator[Rig]:
    ring = await Ring.start(tmp_path, shards, nodes=("node-1",))
    from edgesplit.security.pki import init_pki

    init_pki(ring.pki, nodes=NODES)  # completes the PKI: the test's own node certificates
    recorder = Recorder()
    d = ring.pki / "nodes" / "node-2"
    conf = NodeAgentConfig(node_id="node-2", tls_ca=str(d / "ca.pem"),
                           tls_cert=str(d / "tls.pem"), tls_key=str(d / "tls.key"))
    server = await create_server(conf, [Registration(
        na_grpc.add_NodeAgentServicer_to_server, recorder, "edgesplit.v1.NodeAgent")])
    ring.addresses["node-2"] = f"127.0.0.1:{server.port}"
    keys = {"node-0": generate_agreement_key(), "node-2": generate_agreement_key(),
            "node-1": load_agreement_key(tmp_path / "node-1" / "node-1.x25519.pem")}
    rig = Rig(ring, recorder, server, keys)
    yield rig
    await ring.stop()
    await server.server.stop(0)


def _plan(rig: Rig, epoch: int = 1) -> Plan:
    return plan_from_cuts(["node-0", "node-1", "node-2"], [1, 3], 4,
                          rig.ring.manifest.model_digest, epoch)


def _frame(rig: Rig, x: torch.Tensor, *, keys: LinkKeys | None = None, session: str = "s1",
           step: int = 0, start_pos: int = 0, hop: int = 1, entry: str = "node-0",
           src: str = "node-0", sealer: Any = None) -> na.Frame:
    wire = to_wire(x, "float32")
    header = FrameHeader(session, step, hop, 1, src, "node-1", wire.shape, wire.dtype, 0, 1,
                         entry, start_pos)
    sealer = sealer or (keys or rig.keys_of()).sealer()
    nonce, ct = sealer.seal(header, wire.data) if src == "node-0" else (b"\0" * 12, wire.data)
    return na.Frame(header=na.FrameHeader(**header.as_dict()), nonce=nonce, ciphertext=ct)


def _count(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _rejected(reason: str) -> float:
    return _count("edgesplit_frames_rejected_total", reason=reason)


def _opens(keys: LinkKeys, frame: na.Frame) -> bool:
    try:
        keys.opener().open(frame.nonce, FrameHeader.from_proto(frame.header), frame.ciphertext)
    except Exception:  # noqa: BLE001 - any refusal
        return False
    return True


# ---- replays and restarts ---------------------------------------------------------------

async def test_a_frame_replayed_after_the_receiver_restarts_is_refused(rig: Rig) -> None:
    await rig.hello()
    await rig.commit(_plan(rig))
    recorded = _frame(rig, torch.randn(1, 3, 64))
    link = rig.link()
    assert await link.status(na.LinkMessage(frame=recorded)) == grpc.StatusCode.OK
    await asyncio.wait_for(rig.recorder.frames.get(), 30)
    before_salt = rig.agent_salt

    await rig.ring.restart("node-1")  # replay windows gone with the process
    link = rig.link()
    stale = _rejected("stale_link")
    assert await link.status(na.LinkMessage(frame=recorded)) == grpc.StatusCode.UNAVAILABLE
    assert _rejected("stale_link") == stale + 1
    # Even a replayed hello (the sender's old salt) does not revive the old key:
    # the receiver's own salt is new.
    assert await rig.hello() != before_salt
    failed = _rejected("decrypt_failed")
    assert await link.status(na.LinkMessage(frame=recorded)) == grpc.StatusCode.PERMISSION_DENIED
    assert _rejected("decrypt_failed") == failed + 1
    assert rig.runner().session_length("s1") is None  # the KV cache never saw it
    assert rig.recorder.frames.empty()
    fresh = _frame(rig, torch.randn(1, 3, 64))  # the real sender, keyed to the new life
    assert await link.status(na.LinkMessage(frame=fresh)) == grpc.StatusCode.OK


async def test_a_restarted_sender_never_reuses_a_nonce_space(rig: Rig) -> None:
    await rig.hello()
    await rig.commit(_plan(rig))
    out: list[na.Frame] = []
    for life in range(2):
        if life:
            await rig.ring.restart("node-1")
            await rig.hello()
        link = rig.link()
        frame = _frame(rig, torch.randn(1, 2, 64), session=f"s{life}")
        assert await link.status(na.LinkMessage(frame=frame)) == grpc.StatusCode.OK
        out.append(await asyncio.wait_for(rig.recorder.frames.get(), 30))
    first, second = rig.recorder.hellos
    assert first != second and len(first) == len(second) == SALT_LEN

    def keys(sender_salt: bytes) -> LinkKeys:
        return LinkSecret.derive(rig.keys["node-2"], rig.keys["node-1"].public_key(), "node-2",
                               "node-1", 1).keys(rig.recorder.salt, sender_salt)

    # Both lives start their counter at 0 ...
    assert int.from_bytes(out[0].nonce[4:], "big") == int.from_bytes(out[1].nonce[4:], "big") == 0
    # ... under keys that differ, because each life's salt is in its key.
    assert keys(first).recv_key != keys(second).recv_key
    assert _opens(keys(first), out[0]) and not _opens(keys(first), out[1])
    assert _opens(keys(second), out[1])


# ---- frames no hop check but the receiver's can catch -------------------------------------

async def test_a_frame_for_a_hop_this_node_does_not_hold_is_misrouted(rig: Rig) -> None:
    """node-0 is a true peer of node-1 (route A) and sits before hop 2 of
    route B, which is node-2's: a frame sealed by node-0 with their real key,
    naming route B's hop 2 and node-1 as receiver, passes every sender check."""
    digest = rig.ring.manifest.model_digest
    route_a = route_from_cuts(NodeId("node-0"), [NodeId(n) for n in ("node-0", "node-1",
                                                                      "node-2")], [1, 3], 4)
    route_b = route_from_cuts(NodeId("node-2"), [NodeId("node-2"), NodeId("node-0")], [1], 4)
    plan = Plan(1, digest, (route_a, route_b))  # type: ignore[arg-type]
    await rig.hello()
    await rig.commit(plan)
    link = rig.link()
    assert await link.status(na.LinkMessage(frame=_frame(rig, torch.randn(1, 2, 64)))) \
        == grpc.StatusCode.OK
    await asyncio.wait_for(rig.recorder.frames.get(), 30)
    runner = rig.runner()
    sessions, kv = runner.session_count(), runner.kv_bytes()
    misrouted = _rejected("misrouted")
    wrong_hop = _frame(rig, torch.randn(1, 2, 64), session="s2", hop=2, entry="node-2")
    assert await link.status(na.LinkMessage(frame=wrong_hop)) == grpc.StatusCode.PERMISSION_DENIED
    assert _rejected("misrouted") == misrouted + 1
    assert (runner.session_count(), runner.kv_bytes()) == (sessions, kv)
    assert rig.recorder.frames.empty()


async def test_nan_and_infinite_activations_are_refused(rig: Rig) -> None:
    await rig.hello()
    await rig.commit(_plan(rig))
    link = rig.link()
    sealer = rig.keys_of().sealer()
    assert await link.status(na.LinkMessage(frame=_frame(rig, torch.randn(1, 3, 64),
                                                       sealer=sealer))) == grpc.StatusCode.OK
    await asyncio.wait_for(rig.recorder.frames.get(), 30)
    runner = rig.runner()
    kv = runner.kv_bytes()
    for bad in (math.nan, math.inf, -math.inf):
        x = torch.randn(1, 1, 64)
        x[0, 0, 17] = bad
        before = _rejected("non_finite")
        step = _frame(rig, x, step=1, start_pos=3, sealer=sealer)
        assert await link.status(na.LinkMessage(frame=step)) == grpc.StatusCode.INVALID_ARGUMENT
        assert _rejected("non_finite") == before + 1
        assert runner.session_length("s1") == 3 and runner.kv_bytes() == kv
    assert rig.recorder.frames.empty()
    good = _frame(rig, torch.randn(1, 1, 64), step=1, start_pos=3, sealer=sealer)
    assert await link.status(na.LinkMessage(frame=good)) == grpc.StatusCode.OK


async def test_a_chunk_flood_is_bounded(rig: Rig) -> None:
    await rig.hello()
    await rig.commit(_plan(rig))
    link = rig.link()
    sealer = rig.keys_of().sealer()
    chunks = rig.ring.agents["node-1"].stage._chunks
    limit = chunks.limits.max_frames

    def first_chunk(session: str, forged: bool = False) -> na.Frame:
        wire = to_wire(torch.randn(1, 4, 64), "float32")
        h = FrameHeader(session, 0, 1, 1, "node-0", "node-1", wire.shape, wire.dtype, 0, 2,
                        "node-0", 0)
        nonce, ct = sealer.seal(h, memoryview(wire.data)[:512])
        if forged:
            ct = bytes(len(ct))
        return na.Frame(header=na.FrameHeader(**h.as_dict()), nonce=nonce, ciphertext=ct)

    # A forged first chunk holds no buffer; an authentic one holds one.
    assert await link.status(na.LinkMessage(frame=first_chunk("x", forged=True))) \
        == grpc.StatusCode.PERMISSION_DENIED
    assert len(chunks) == 0
    before = _rejected("chunk_limit")
    codes = [await link.status(na.LinkMessage(frame=first_chunk(f"f{i}"))) for i in range(limit + 6)]
    assert codes == [grpc.StatusCode.OK] * limit + [grpc.StatusCode.RESOURCE_EXHAUSTED] * 6
    assert len(chunks) == limit and chunks.held_bytes == limit * 4 * 64 * 4
    assert _rejected("chunk_limit") == before + 6
    assert rig.runner().session_count() == 0  # half frames never reached a layer


def test_half_received_frames_expire_and_bytes_are_capped() -> None:
    now = [0.0]
    r = Reassembly(ReassemblyLimits(max_frames=10, max_bytes=4096, ttl_s=5.0), lambda: now[0])

    def header(session: str, tokens: int) -> FrameHeader:
        return FrameHeader(session, 0, 1, 1, "a", "b", (1, tokens, 8), "float32", 0, 2, "a", 0)

    r.slot(header("s1", 16), 256)  # 512 bytes
    r.slot(header("s2", 64), 1024)  # 2048 bytes
    with pytest.raises(Exception) as err:
        r.slot(header("s3", 64), 1024)  # 2048 more would pass the 4096 cap
    assert getattr(err.value, "reason", "") == "chunk_limit"
    now[0] = 6.0  # both expire on the next new frame
    r.slot(header("s3", 64), 1024)
    assert len(r) == 1 and r.held_bytes == 2048


@pytest.mark.parametrize("dtype,bits", [("float32", [0x7FC00000, 0x7F800000, 0xFF800000]),
                                        ("bfloat16", [0x7FC0, 0x7F80, 0xFF80]),
                                        ("float16", [0x7E00, 0x7C00, 0xFC00])])
def test_non_finite_reads_the_wire_bytes_of_every_dtype(dtype: str, bits: list[int]) -> None:
    size = 4 if dtype == "float32" else 2
    # Finite extremes first: the largest finite value of each format is not refused.
    finite = {"float32": 0x7F7FFFFF, "bfloat16": 0x7F7F, "float16": 0x7BFF}[dtype]
    words = [finite, finite | (1 << (8 * size - 1)), 0, 1] * 8
    data = b"".join(w.to_bytes(size, "little") for w in words)
    assert non_finite(WireTensor(data, (1, 1, len(words)), dtype)) == 0
    bad = b"".join(w.to_bytes(size, "little") for w in bits) + data
    assert non_finite(WireTensor(bad, (1, 1, len(words) + 3), dtype)) == 3


# ---- who may say what on a link ---------------------------------------------------------------

async def test_link_messages_must_name_the_certificates_node(rig: Rig) -> None:
    await rig.hello()
    await rig.commit(_plan(rig))
    assert await rig.link().status(na.LinkMessage(frame=_frame(rig, torch.randn(1, 2, 64)))) \
        == grpc.StatusCode.OK
    await asyncio.wait_for(rig.recorder.frames.get(), 30)
    runner = rig.runner()
    as_node2 = rig.link("node-2")  # a true node, but not node-0
    wrong = {
        "frame": na.LinkMessage(frame=_frame(rig, torch.randn(1, 1, 64), step=1, start_pos=2)),
        "step_failure": na.LinkMessage(step_failure=na.StepFailure(
            session_id="s1", step=1, epoch=1, reporter="node-0", failed_node="node-1")),
    }
    for kind, msg in wrong.items():
        before = _count("edgesplit_link_wrong_source_total", kind=kind)
        assert await as_node2.status(msg) == grpc.StatusCode.PERMISSION_DENIED, kind
        assert _count("edgesplit_link_wrong_source_total", kind=kind) == before + 1
    end = na.LinkMessage(end_session=na.EndSession(session_id="s1", epoch=1))
    assert await rig.link("node-3").status(end) == grpc.StatusCode.PERMISSION_DENIED  # no peer
    assert runner.session_length("s1") == 2
    with pytest.raises(grpc.aio.AioRpcError) as err:  # a hello in another node's name
        await rig.ring.stub("node-1", "nodes", "node-2").Hello(
            na.LinkHello(node_id="node-0", salt=os.urandom(SALT_LEN)), timeout=5)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    anonymous = na_grpc.NodeAgentStub(transport_of(rig.ring.pki, "clients", "app").aio_channel(
        rig.ring.addresses["node-1"]))
    with pytest.raises(grpc.aio.AioRpcError) as err:  # a client's certificate: wrong role
        await anonymous.Hello(na.LinkHello(node_id="node-0", salt=rig.salt), timeout=5)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert await as_node2.status(end) == grpc.StatusCode.OK  # a peer may end it
    assert runner.session_length("s1") is None
