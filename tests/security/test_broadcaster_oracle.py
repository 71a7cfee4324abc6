"""Attacks on Broadcaster.Apply as a signing oracle, against a real broadcaster
and real node-agent servers (tests/service/broadcaster_cluster.py): the caller
cannot choose addresses, keys or trust, a node answering with another key gets
nothing signed, an epoch jump spends nothing, and the tried epoch outlives a
broadcaster restart."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from prometheus_client import REGISTRY

from edgesplit.rpc.convert import plan_to_proto
from edgesplit.rpc.server import RunningServer, create_server
from edgesplit.security.keys import generate_agreement_key, public_bytes
from edgesplit.v1 import broadcaster_pb2 as bpb
from edgesplit.v1 import broadcaster_pb2_grpc as bpb_grpc
from services.broadcaster import __main__ as broadcaster_main
from services.broadcaster.config import BroadcasterConfig
from services.node_agent import __main__ as agent_main
from services.node_agent.config import NodeAgentConfig
from tests.service.broadcaster_cluster import (
    NODES,
    TRANSPORT,
    Cluster,
    Faults,
    Flaky,
    cluster,
    fake_factory,
    plan_of,
)

__all__ = ["cluster"]  # the fixture, re-exported for pytest


def _field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field (numbers here are < 16, lengths < 128)."""
    assert number < 16 and len(payload) < 128
    return bytes([(number << 3) | 2, len(payload)]) + payload


def old_style_apply(plan_bytes: bytes, addresses: dict[str, str], trusted: list[str]) -> bytes:
    """An ApplyRequest as the old schema encoded it: the plan plus caller-chosen
    addresses (field 3), trusted_nodes (4) and privacy_depth = 0 (6)."""
    out = bytes([0x0A]) + _varint(len(plan_bytes)) + plan_bytes
    for node, addr in addresses.items():
        out += _field(3, _field(1, node.encode()) + _field(2, addr.encode()))
    for node in trusted:
        out += _field(4, node.encode())
    return out + bytes([6 << 3, 0])


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


@pytest.fixture
async def impostor(cluster: Cluster) -> AsyncIterator[tuple[str, Faults]]:
    """A real node agent that calls itself node-1, with a key of its own."""
    faults = Faults()
    conf = NodeAgentConfig(node_id="node-1", insecure=True, state_dir=str(cluster.tmp / "evil"),
                           control_public_key=str(cluster.tmp / "keys" /
                                                  "control.ed25519.pub.pem"))
    regs, _ = agent_main.build(conf, fake_factory("evil", faults))
    running: RunningServer = await create_server(conf, regs, [Flaky("evil", faults)])
    yield f"127.0.0.1:{running.port}", faults
    await running.server.stop(None)


async def _epochs(cluster: Cluster) -> dict[str, tuple[int, int]]:
    out = {}
    for n in NODES:
        info = await cluster.info(n)
        out[n] = (info.committed_epoch, info.prepared_epoch)
    return out


async def _last_epoch(stub: bpb_grpc.BroadcasterStub) -> int:
    return int((await stub.Current(bpb.CurrentRequest(), timeout=5)).last_epoch)


async def test_caller_chosen_addresses_and_trust_are_ignored(
        cluster: Cluster, impostor: tuple[str, Faults]) -> None:
    evil_addr, evil = impostor
    plan = plan_to_proto(plan_of(cluster.digest, 1, (1, 3))).SerializeToString()
    raw = cluster.channels[0].unary_unary(  # the broadcaster's channel
        "/edgesplit.v1.Broadcaster/Apply", request_serializer=None,
        response_deserializer=bpb.ApplyResponse.FromString)
    reply = await raw(old_style_apply(plan, {"node-1": evil_addr}, ["node-1"]), timeout=30)
    # Committed on the enrolled node-1; the impostor was never even asked.
    assert reply.committed
    assert evil.prepares == {}
    assert (await cluster.info("node-1")).committed_epoch == 1


async def test_a_node_not_in_the_inventory_is_refused_and_spends_nothing(
        cluster: Cluster, impostor: tuple[str, Faults]) -> None:
    _, evil = impostor
    plan = plan_of(cluster.digest, 1, (1, 3), ("node-0", "node-evil", "node-2"))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await cluster.apply(plan)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "node-evil" in (err.value.details() or "")
    assert await _last_epoch(cluster.broadcaster) == 0
    assert cluster.faults.prepares == {} and evil.prepares == {}
    assert (await cluster.apply(plan_of(cluster.digest, 1, (1, 3)))).committed


async def test_a_node_answering_with_another_key_gets_nothing_signed(
        cluster: Cluster, impostor: tuple[str, Faults]) -> None:
    assert (await cluster.apply(plan_of(cluster.digest, 1, (1, 3)))).committed
    before = await _epochs(cluster)
    prepares = dict(cluster.faults.prepares)
    evil_addr, evil = impostor
    mismatches = REGISTRY.get_sample_value("edgesplit_broadcaster_key_mismatch_total") or 0.0
    real, cluster.addresses["node-1"] = cluster.addresses["node-1"], evil_addr
    cluster.enrol()  # the enrolled address now reaches the impostor
    reply = await cluster.apply(plan_of(cluster.digest, 2, (2, 3)))
    cluster.addresses["node-1"] = real
    assert not reply.committed and reply.epoch == 1
    outcome = {n.node_id: n for n in reply.nodes}["node-1"]
    assert outcome.code == "FAILED_PRECONDITION" and "enrolled" in outcome.detail
    assert evil.prepares == {} and cluster.faults.prepares == prepares  # nothing signed
    assert await _epochs(cluster) == before
    assert REGISTRY.get_sample_value("edgesplit_broadcaster_key_mismatch_total") == mismatches + 1


async def test_an_enrolled_key_the_node_does_not_hold_is_refused(cluster: Cluster) -> None:
    other = base64.b64encode(public_bytes(generate_agreement_key().public_key())).decode()
    cluster.enrol(**{"node-2": {"agreement_public_key": other}})
    reply = await cluster.apply(plan_of(cluster.digest, 1, (1, 3)))
    assert not reply.committed
    assert {n.node_id: n.code for n in reply.nodes}["node-2"] == "FAILED_PRECONDITION"
    assert cluster.faults.prepares == {}


async def test_an_epoch_jump_is_refused_and_burns_nothing(cluster: Cluster) -> None:
    assert (await cluster.apply(plan_of(cluster.digest, 1, (1, 3)))).committed
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await cluster.apply(plan_of(cluster.digest, 2**63, (2, 3)))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert await _last_epoch(cluster.broadcaster) == 1
    assert {n: e for n, (e, _) in (await _epochs(cluster)).items()} == dict.fromkeys(NODES, 1)
    assert (await cluster.apply(plan_of(cluster.digest, 2, (2, 3)))).committed


async def _restarted(cluster: Cluster, tmp: Path) -> tuple[RunningServer, grpc.aio.Channel]:
    bconf = BroadcasterConfig(insecure=True, state_dir=str(tmp / "bc"),
                              signing_key=str(tmp / "keys" / "control.ed25519.pem"),
                              inventory=str(tmp / "inventory.json"), rpc_timeout_s=5.0)
    _, regs = broadcaster_main.build(bconf)
    server = await create_server(bconf, regs)
    return server, TRANSPORT.aio_channel(f"127.0.0.1:{server.port}")


async def test_the_tried_epoch_survives_a_broadcaster_restart(cluster: Cluster) -> None:
    assert (await cluster.apply(plan_of(cluster.digest, 1, (1, 3)))).committed
    cluster.faults.fail.add("node-1")  # its new segment [2, 3) fails to load
    assert not (await cluster.apply(plan_of(cluster.digest, 5, (2, 3)))).committed  # aborted
    cluster.faults.fail.clear()
    assert not [p for p in (cluster.tmp / "bc").iterdir() if p.name.startswith(".")]
    server, channel = await _restarted(cluster, cluster.tmp)
    try:
        stub = bpb_grpc.BroadcasterStub(channel)
        assert await _last_epoch(stub) == 5
        replay = bpb.ApplyRequest(plan=plan_to_proto(plan_of(cluster.digest, 5, (2, 3))))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Apply(replay, timeout=10)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        # Same cuts as the committed plan: every shard is cached, so nothing is
        # fetched from the first broadcaster (which never granted epoch 6).
        fresh = bpb.ApplyRequest(plan=plan_to_proto(plan_of(cluster.digest, 6, (1, 3))))
        assert (await stub.Apply(fresh, timeout=30)).committed
    finally:
        await channel.close()
        await server.server.stop(None)
