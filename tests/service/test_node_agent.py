"""A real node agent (in-process gRPC server, real model segment, real keys)
against everything a peer or the control plane could send it.

The test plays the control plane (signing key), the previous hop node-0 and
the next hop node-2 (a recording server); the agent under test is node-1 and
runs layers [1, 3) of a 4-layer model.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import torch
from prometheus_client import REGISTRY

from edgesplit.core.types import Plan
from edgesplit.model.runner import TorchSegmentRunner
from edgesplit.model.shard import Manifest, ShardDir
from edgesplit.model.wire import from_wire, to_wire
from edgesplit.rpc.assignments import (
    PeerInfo,
    ShardEntry,
    abort_request,
    build_assignments,
    commit_request,
    sign_assignment,
)
from edgesplit.rpc.server import create_server
from edgesplit.rpc.transport import Transport, TransportSettings
from edgesplit.security.channel import SALT_LEN, LinkKeys, LinkSecret
from edgesplit.security.header import BatchHeader, FrameHeader
from edgesplit.security.keys import (
    generate_agreement_key,
    generate_signing_key,
    public_bytes,
    save_public_key,
)
from edgesplit.testbed import ensure_model, plan_from_cuts
from edgesplit.v1 import node_agent_pb2 as na
from edgesplit.v1 import node_agent_pb2_grpc as na_grpc
from services.node_agent.__main__ import build
from services.node_agent.config import NodeAgentConfig
from tests.service.link_peer import LinkEnd, Recorder, status_of_ack

MAX_MSG = 1024 * 1024


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("model")
    return ensure_model(base / "model", base / "shards", layers=4, hidden=64)


def _status(ack: na.LinkAck) -> grpc.StatusCode:
    return status_of_ack(ack)


@dataclasses.dataclass
class Rig:
    stub: na_grpc.NodeAgentStub
    link: LinkEnd
    control: Any
    keys: dict[str, Any]  # node id -> X25519 private key (node-0, node-2 are the test's)
    addresses: dict[str, str]
    manifest: Manifest
    recorder: Recorder
    agent: Any
    shards: Path

    def plan(self, epoch: int) -> Plan:
        return plan_from_cuts(["node-0", "node-1", "node-2"], [1, 3], 4,
                              self.manifest.model_digest, epoch)

    def assignment(self, epoch: int, ttl_s: float = 600, **shard_override: str) -> na.Assignment:
        shards = {s.name: ShardEntry(s.name, shard_override.get(s.name.replace(".", "_"),
                                                                s.sha256), s.bytes)
                  for s in self.manifest.shards}
        peers = {n: PeerInfo(n, self.addresses[n], public_bytes(k)) for n, k in self.keys.items()}
        return build_assignments(self.plan(epoch), shards, peers, 4,
                                 int((time.time() + ttl_s) * 1000))["node-1"]

    def keys_with(self, me: str) -> LinkKeys:
        """``me``'s link keys with the agent (the salts of node-0's hello)."""
        return LinkSecret.derive(self.keys[me], self.keys["node-1"].public_key(), me, "node-1",
                               self.epoch).keys(self.salt, self.agent_salt)

    epoch: int = 1
    channel: Any = None
    salt: bytes = b""  # node-0's (the test's) process salt
    agent_salt: bytes = b""
    envelopes: dict[int, na.SignedEnvelope] = dataclasses.field(default_factory=dict)

    async def prepare(self, a: na.Assignment, key: Any = None) -> na.PrepareResponse:
        env = sign_assignment(a, key or self.control)
        reply = await self.stub.Prepare(na.PrepareRequest(assignment=env), timeout=60)
        self.envelopes[a.epoch] = env
        return reply

    async def commit(self, epoch: int) -> na.CommitResponse:
        return await self.stub.Commit(commit_request(self.envelopes[epoch], self.control),
                                      timeout=10)

    async def abort(self, epoch: int) -> na.AbortResponse:
        return await self.stub.Abort(abort_request("node-1", epoch, self.control,
                                                   self.envelopes.get(epoch)), timeout=5)


@pytest.fixture
async def rig(shards: Path, tmp_path: Path) -> AsyncIterator[Rig]:
    control = generate_signing_key()
    save_public_key(control.public_key(), tmp_path / "control.pub.pem")
    config = NodeAgentConfig(node_id="node-1", insecure=True, state_dir=str(tmp_path / "state"),
                             shard_dir=str(shards),
                             control_public_key=str(tmp_path / "control.pub.pem"),
                             max_message_bytes=MAX_MSG, rpc_timeout_s=5)
    regs, agent_parts = build(config)
    agent = await create_server(config, regs)
    recorder = Recorder()
    rec_config = NodeAgentConfig(node_id="node-2", insecure=True)
    from edgesplit.rpc.server import Registration

    rec = await create_server(rec_config, [Registration(
        na_grpc.add_NodeAgentServicer_to_server, recorder, "edgesplit.v1.NodeAgent")])
    channel = Transport(TransportSettings(max_message_bytes=MAX_MSG * 4)).aio_channel(
        f"127.0.0.1:{agent.port}")
    stub = na_grpc.NodeAgentStub(channel)
    info = await stub.GetInfo(na.GetInfoRequest(), timeout=5)
    from edgesplit.security.keys import load_agreement_key

    keys = {"node-0": generate_agreement_key(), "node-2": generate_agreement_key(),
            "node-1": load_agreement_key(tmp_path / "state" / "node-1.x25519.pem")}
    assert public_bytes(keys["node-1"]) == info.x25519_public
    addresses = {"node-0": "127.0.0.1:9", "node-1": f"127.0.0.1:{agent.port}",
                 "node-2": f"127.0.0.1:{rec.port}"}
    link = LinkEnd(stub)
    salt = os.urandom(SALT_LEN)
    hello = await stub.Hello(na.LinkHello(node_id="node-0", salt=salt), timeout=5)
    yield Rig(stub, link, control, keys, addresses, Manifest.load(shards), recorder,
              agent_parts, shards, channel=channel, salt=salt, agent_salt=hello.salt)
    link.call.cancel()
    await channel.close()
    await agent_parts.close()
    await agent.server.stop(0)
    await rec.server.stop(0)


async def _committed(rig: Rig, epoch: int = 1) -> None:
    await rig.prepare(rig.assignment(epoch))
    await rig.commit(epoch)


def _frame(rig: Rig, hidden: torch.Tensor, *, session: str = "s1", step: int = 0,
           start_pos: int = 0, hop: int = 1, src: str = "node-0", dst: str = "node-1",
           dtype: str = "float32", sealer: Any = None) -> na.Frame:
    wire = to_wire(hidden, dtype)
    header = FrameHeader(session, step, hop, rig.epoch, src, dst, wire.shape, wire.dtype, 0, 1,
                         "node-0", start_pos)
    sealer = sealer or rig.keys_with(src).sealer()
    nonce, ct = sealer.seal(header, wire.data) if dst == "node-1" else (b"\0" * 12, wire.data)
    return na.Frame(header=na.FrameHeader(**header.as_dict()), nonce=nonce, ciphertext=ct)


def _rejected(reason: str) -> float:
    return REGISTRY.get_sample_value("edgesplit_frames_rejected_total", {"reason": reason}) or 0.0


def _runner(rig: Rig) -> Any:
    return next(iter(rig.agent.control.book.committed.runners.values()))


async def _code(call: Any) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value.code()


# ---- assignments --------------------------------------------------------------------

async def test_prepare_commit_and_duplicate(rig: Rig) -> None:
    a = rig.assignment(1)
    first = await rig.prepare(a)
    assert first.epoch == 1 and not first.duplicate
    again = await rig.prepare(a)  # a retried Prepare of the same bytes is harmless
    assert again.duplicate
    await rig.commit(1)
    assert (await rig.commit(1)).duplicate
    info = await rig.stub.GetInfo(na.GetInfoRequest(), timeout=5)
    assert info.committed_epoch == 1
    assert [(s.segment.start, s.segment.end) for s in info.segments] == [(1, 3)]


async def test_bad_assignments_are_refused_and_change_nothing(rig: Rig) -> None:
    await _committed(rig)
    before = await rig.stub.GetInfo(na.GetInfoRequest(), timeout=5)
    good = rig.assignment(2)

    forged = sign_assignment(good, rig.control)
    forged.signature = bytes([forged.signature[0] ^ 1]) + forged.signature[1:]
    assert await _code(rig.stub.Prepare(na.PrepareRequest(assignment=forged), timeout=10)) \
        == grpc.StatusCode.UNAUTHENTICATED
    assert await _code(rig.prepare(good, key=generate_signing_key())) \
        == grpc.StatusCode.PERMISSION_DENIED
    foreign = rig.assignment(2)
    foreign.node_id = "node-2"
    assert await _code(rig.prepare(foreign)) == grpc.StatusCode.FAILED_PRECONDITION
    stale = rig.assignment(1)
    stale.expires_at.nanos += 1_000_000  # same epoch, other bytes: a replay or a forgery
    assert await _code(rig.prepare(stale)) == grpc.StatusCode.FAILED_PRECONDITION
    assert await _code(rig.prepare(rig.assignment(2, ttl_s=-1))) \
        == grpc.StatusCode.FAILED_PRECONDITION
    bad_digest = rig.assignment(2, layer_1="0" * 64)
    assert await _code(rig.prepare(bad_digest)) == grpc.StatusCode.FAILED_PRECONDITION

    after = await rig.stub.GetInfo(na.GetInfoRequest(), timeout=5)
    assert after == before
    assert after.prepared_epoch == 0


async def test_abort_keeps_serving_old_epoch(rig: Rig) -> None:
    await _committed(rig)
    await rig.prepare(rig.assignment(2))
    reply = await rig.abort(2)
    assert reply.committed_epoch == 1
    assert await _code(rig.commit(2)) == grpc.StatusCode.FAILED_PRECONDITION


# ---- frames -------------------------------------------------------------------------

async def test_good_frame_runs_layers_and_forwards_sealed_output(rig: Rig) -> None:
    await _committed(rig)
    torch.manual_seed(0)
    x = torch.randn(1, 5, 64)
    assert await rig.link.frame(_frame(rig, x)) == grpc.StatusCode.OK
    out = await asyncio.wait_for(rig.recorder.frames.get(), 30)
    h = out.header
    assert (h.src, h.dst, h.hop, h.start_pos, list(h.shape)) == ("node-1", "node-2", 2, 0,
                                                                 [1, 5, 64])
    secret = LinkSecret.derive(rig.keys["node-2"], rig.keys["node-1"].public_key(), "node-2",
                               "node-1", 1)
    opener = secret.keys(rig.recorder.salt, rig.recorder.peer_salt).opener()
    plain = opener.open(out.nonce, FrameHeader.from_proto(h), out.ciphertext)
    from edgesplit.model.base import WireTensor

    got = from_wire(WireTensor(plain, tuple(h.shape), h.dtype))
    ref = TorchSegmentRunner(ShardDir(rig.shards), 1, 3).forward("ref", x, 0)
    assert torch.equal(got, ref)


async def test_tampered_replayed_misrouted_frames_rejected_cache_untouched(rig: Rig) -> None:
    await _committed(rig)
    x = torch.randn(1, 3, 64)
    sealer = rig.keys_with("node-0").sealer()
    good = _frame(rig, x, sealer=sealer)
    assert await rig.link.frame(good) == grpc.StatusCode.OK
    await asyncio.wait_for(rig.recorder.frames.get(), 30)  # acked first, computed after
    runner = _runner(rig)
    assert runner.session_length("s1") == 3

    cases: list[tuple[str, na.Frame, grpc.StatusCode]] = []
    tampered = _frame(rig, torch.randn(1, 1, 64), step=1, start_pos=3, sealer=sealer)
    tampered.ciphertext = bytes([tampered.ciphertext[0] ^ 0x80]) + tampered.ciphertext[1:]
    cases.append(("decrypt_failed", tampered, grpc.StatusCode.PERMISSION_DENIED))
    shifted = _frame(rig, torch.randn(1, 1, 64), step=1, start_pos=3, sealer=sealer)
    shifted.header.start_pos = 0  # header edited in transit: AEAD binds it
    cases.append(("decrypt_failed", shifted, grpc.StatusCode.PERMISSION_DENIED))
    cases.append(("replay", good, grpc.StatusCode.PERMISSION_DENIED))
    wrong_hop = _frame(rig, torch.randn(1, 1, 64), step=1, start_pos=3, hop=2, sealer=sealer)
    cases.append(("misrouted", wrong_hop, grpc.StatusCode.PERMISSION_DENIED))
    wrong_src = _frame(rig, torch.randn(1, 1, 64), step=1, start_pos=3, src="node-2")
    cases.append(("misrouted", wrong_src, grpc.StatusCode.PERMISSION_DENIED))
    for reason, frame, code in cases:
        before = _rejected(reason)
        assert await rig.link.frame(frame) == code, reason
        assert _rejected(reason) == before + 1, reason
        assert runner.session_length("s1") == 3, reason


def _batch(rig: Rig, rows: list[tuple[str, int, int, torch.Tensor]],
           sealer: Any = None) -> na.BatchFrame:
    """(session, step, start_pos, hidden) rows as one batched frame from node-0."""
    headers = [FrameHeader(sid, step, 1, rig.epoch, "node-0", "node-1", tuple(x.shape),
                           "float32", 0, 1, "node-0", pos) for sid, step, pos, x in rows]
    data = torch.cat([x for *_, x in rows], dim=1).contiguous().view(torch.uint8).numpy()
    sealer = sealer or rig.keys_with("node-0").sealer()
    nonce, ct = sealer.seal(BatchHeader(tuple(headers)), data.tobytes())
    return na.BatchFrame(headers=[na.FrameHeader(**h.as_dict()) for h in headers],
                         nonce=nonce, ciphertext=ct)


async def test_batch_frame_runs_its_sessions_and_forwards_one_batch(rig: Rig) -> None:
    await _committed(rig)
    torch.manual_seed(1)
    a, b = torch.randn(1, 3, 64), torch.randn(1, 2, 64)
    ack = await rig.link.send(na.LinkMessage(batch_frame=_batch(rig, [("a", 0, 0, a),
                                                                      ("b", 0, 0, b)])))
    assert _status(ack) == grpc.StatusCode.OK
    out = await asyncio.wait_for(rig.recorder.batches.get(), 30)
    headers = tuple(FrameHeader.from_proto(h) for h in out.headers)
    assert [(h.session_id, h.hop, h.src, h.dst, h.shape) for h in headers] == [
        ("a", 2, "node-1", "node-2", (1, 3, 64)), ("b", 2, "node-1", "node-2", (1, 2, 64))]
    secret = LinkSecret.derive(rig.keys["node-2"], rig.keys["node-1"].public_key(), "node-2",
                               "node-1", 1)
    opener = secret.keys(rig.recorder.salt, rig.recorder.peer_salt).opener()
    plain = opener.open(out.nonce, BatchHeader(headers), out.ciphertext)
    from edgesplit.model.base import WireTensor

    got = from_wire(WireTensor(plain, (1, 5, 64), "float32"))
    ref = TorchSegmentRunner(ShardDir(rig.shards), 1, 3)
    want = torch.cat([ref.forward("a", a, 0), ref.forward("b", b, 0)], dim=1)
    assert torch.allclose(got, want, atol=1e-5)  # rows of one batch: rounding only


async def test_a_stale_session_in_a_batch_frame_does_not_stop_the_others(rig: Rig) -> None:
    await _committed(rig)
    rows = [("a", 1, 5, torch.randn(1, 1, 64)),  # step 1 of a session node-1 never saw
            ("b", 0, 0, torch.randn(1, 2, 64))]
    ack = await rig.link.send(na.LinkMessage(batch_frame=_batch(rig, rows)))
    assert _status(ack) == grpc.StatusCode.OK
    out = await asyncio.wait_for(rig.recorder.frames.get(), 30)  # b alone: a plain frame
    assert out.header.session_id == "b"
    runner = _runner(rig)
    assert runner.session_length("a") is None and runner.session_length("b") == 2


async def test_forged_batch_frames_rejected_caches_untouched(rig: Rig) -> None:
    await _committed(rig)
    sealer = rig.keys_with("node-0").sealer()
    rows = [("a", 0, 0, torch.randn(1, 2, 64)), ("b", 0, 0, torch.randn(1, 1, 64))]
    tampered = _batch(rig, rows, sealer)
    tampered.ciphertext = bytes([tampered.ciphertext[0] ^ 1]) + tampered.ciphertext[1:]
    shifted = _batch(rig, rows, sealer)
    shifted.headers[1].session_id = "c"  # a session's part moved to another session
    twice = _batch(rig, rows, sealer)
    twice.headers[1].session_id = "a"  # one session twice: refused before any decryption
    empty = na.BatchFrame()
    for frame, code in ((tampered, grpc.StatusCode.PERMISSION_DENIED),
                        (shifted, grpc.StatusCode.PERMISSION_DENIED),
                        (twice, grpc.StatusCode.INVALID_ARGUMENT),
                        (empty, grpc.StatusCode.INVALID_ARGUMENT)):
        ack = await rig.link.send(na.LinkMessage(batch_frame=frame))
        assert _status(ack) == code, ack.detail
    runner = _runner(rig)
    assert runner.session_length("a") is None and runner.session_length("b") is None


async def test_wrong_shape_or_dtype_rejected_cache_untouched(rig: Rig) -> None:
    await _committed(rig)
    assert await rig.link.frame(_frame(rig, torch.randn(1, 2, 64))) == grpc.StatusCode.OK
    await asyncio.wait_for(rig.recorder.frames.get(), 30)  # acked first, computed after
    runner = _runner(rig)
    before = _rejected("bad_shape")
    bad_shape = _frame(rig, torch.randn(1, 1, 32), step=1, start_pos=2)
    assert await rig.link.frame(bad_shape) == grpc.StatusCode.INVALID_ARGUMENT
    assert _rejected("bad_shape") == before + 1
    bad_dtype = _frame(rig, torch.randn(1, 1, 64), step=1, start_pos=2, dtype="float16")
    assert await rig.link.frame(bad_dtype) == grpc.StatusCode.INVALID_ARGUMENT
    wrong_pos = _frame(rig, torch.randn(1, 1, 64), step=1, start_pos=7)
    assert await rig.link.frame(wrong_pos) == grpc.StatusCode.INVALID_ARGUMENT
    assert runner.session_length("s1") == 2


async def test_unknown_session_and_epoch(rig: Rig) -> None:
    await _committed(rig)
    later = _frame(rig, torch.randn(1, 1, 64), session="nobody", step=4, start_pos=9)
    assert await rig.link.frame(later) == grpc.StatusCode.NOT_FOUND
    end = na.LinkMessage(end_session=na.EndSession(session_id="nobody", epoch=1))
    assert _status(await rig.link.send(end)) == grpc.StatusCode.NOT_FOUND
    other_epoch = _frame(rig, torch.randn(1, 1, 64))
    other_epoch.header.epoch = 99
    assert await rig.link.frame(other_epoch) == grpc.StatusCode.FAILED_PRECONDITION


async def test_oversized_message_is_resource_exhausted(rig: Rig) -> None:
    await _committed(rig)
    big = _frame(rig, torch.randn(1, 2, 64))
    big.ciphertext = b"\0" * (MAX_MSG + 1)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await rig.link.send(na.LinkMessage(frame=big))
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_a_refused_frame_does_not_end_the_link(rig: Rig) -> None:
    await _committed(rig)
    bad = _frame(rig, torch.randn(1, 1, 64), session="nobody", step=4, start_pos=9)
    assert await rig.link.frame(bad) == grpc.StatusCode.NOT_FOUND
    assert await rig.link.frame(_frame(rig, torch.randn(1, 2, 64))) == grpc.StatusCode.OK
    assert (await asyncio.wait_for(rig.recorder.frames.get(), 30)).header.hop == 2


async def test_end_session_on_the_link_drops_the_cache(rig: Rig) -> None:
    await _committed(rig)
    assert await rig.link.frame(_frame(rig, torch.randn(1, 2, 64))) == grpc.StatusCode.OK
    await asyncio.wait_for(rig.recorder.frames.get(), 30)  # acked first, computed after
    runner = _runner(rig)
    assert runner.session_length("s1") == 2
    end = na.LinkMessage(end_session=na.EndSession(session_id="s1", epoch=1))
    assert _status(await rig.link.send(end)) == grpc.StatusCode.OK
    assert runner.session_length("s1") is None


async def test_testbed_admin_is_not_served_in_production(rig: Rig) -> None:
    from edgesplit.v1 import testbed_admin_pb2 as ta
    from edgesplit.v1 import testbed_admin_pb2_grpc as ta_grpc

    admin = ta_grpc.TestbedAdminStub(rig.channel)
    assert await _code(admin.GetConditions(ta.GetConditionsRequest(), timeout=5)) \
        == grpc.StatusCode.UNIMPLEMENTED
