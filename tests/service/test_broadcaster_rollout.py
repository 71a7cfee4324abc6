"""Broadcaster two-phase rollout against real in-process node agents: commit,
abort on any failure or timeout, duplicates and lost replies harmless."""

from __future__ import annotations

import asyncio
import hashlib

import grpc
import pytest

from edgesplit.rpc.convert import plan_to_proto
from edgesplit.v1 import broadcaster_pb2 as bpb
from services.broadcaster import __main__ as broadcaster_main
from services.broadcaster.config import BroadcasterConfig
from tests.service.broadcaster_cluster import NODES, Cluster, cluster, outcomes, plan_of

__all__ = ["cluster"]  # the fixture, re-exported for pytest


# ---- rollout -----------------------------------------------------------------------
async def test_apply_commits_and_nodes_fetch_only_their_shards(cluster: Cluster) -> None:
    reply = await cluster.apply(plan_of(cluster.digest, 1, (1, 3)))
    assert reply.committed and reply.epoch == 1 and not reply.duplicate
    assert {n: s for n, (s, _) in outcomes(reply).items()} == dict.fromkeys(NODES, "committed")
    sha = {n: hashlib.sha256(b).hexdigest() for n, b in cluster.shards.items()}
    wanted = {"node-0": {"embed", "layer.0", "head"}, "node-1": {"layer.1", "layer.2"},
              "node-2": {"layer.3"}}
    for node, parts in wanted.items():
        info = await cluster.info(node)
        assert info.committed_epoch == 1 and info.prepared_epoch == 0
        cached = cluster.cached(node)
        assert {sha[p] for p in parts} <= cached
        assert not {sha[p] for p in set(sha) - parts} & cached  # nothing it was not given
        for p in parts:  # the published plaintext is exactly the shard
            assert (cluster.tmp / node / "shards" / sha[p]).read_bytes() == cluster.shards[p]
        assert not [c for c in cached if c.startswith(".")]  # no temp files left
        assert any(c.endswith(".d") for c in cached)  # config + tokenizer files
    out = {n.node_id: (n.shards_fetched, n.shards_cached) for n in reply.nodes}
    assert out["node-0"] == (4, 0)  # embed, layer.0, head + meta
    current = await cluster.broadcaster.Current(bpb.CurrentRequest(), timeout=5)
    assert current.plan.epoch == 1


async def test_cached_shards_are_not_fetched_again(cluster: Cluster) -> None:
    await cluster.apply(plan_of(cluster.digest, 1, (1, 3)))
    reply = await cluster.apply(plan_of(cluster.digest, 2, (1, 3)))
    assert reply.committed and reply.epoch == 2
    assert all(n.shards_fetched == 0 and n.shards_cached > 0 for n in reply.nodes)
    reply = await cluster.apply(plan_of(cluster.digest, 3, (2, 3)))  # node-0 now needs layer.1
    fetched = {n.node_id: n.shards_fetched for n in reply.nodes}
    assert reply.committed and fetched == {"node-0": 1, "node-1": 0, "node-2": 0}


async def test_duplicate_apply_changes_nothing(cluster: Cluster) -> None:
    plan = plan_of(cluster.digest, 1, (1, 3))
    await cluster.apply(plan)
    prepares = dict(cluster.faults.prepares)
    again = await cluster.apply(plan)
    assert again.duplicate and again.committed and again.epoch == 1
    assert cluster.faults.prepares == prepares  # not re-sent
    for node in NODES:
        assert (await cluster.info(node)).committed_epoch == 1
    for stale in (plan_of(cluster.digest, 1, (2, 3)), plan_of(cluster.digest, 0, (1, 3))):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await cluster.apply(stale)
        assert err.value.code() in (grpc.StatusCode.FAILED_PRECONDITION,
                                    grpc.StatusCode.INVALID_ARGUMENT)


async def _assert_still_serving(cluster: Cluster, epoch: int) -> None:
    for node in NODES:
        info = await cluster.info(node)
        assert (info.committed_epoch, info.prepared_epoch) == (epoch, 0), node


async def test_a_failing_node_aborts_everywhere(cluster: Cluster) -> None:
    await cluster.apply(plan_of(cluster.digest, 1, (1, 3)))
    cluster.faults.fail.add("node-1")  # its segment changes, so it builds a runner
    reply = await cluster.apply(plan_of(cluster.digest, 2, (2, 3)))
    assert not reply.committed and reply.epoch == 1
    states = outcomes(reply)
    assert states == {"node-0": ("aborted", ""), "node-1": ("failed", "FAILED_PRECONDITION"),
                      "node-2": ("aborted", "")}
    await _assert_still_serving(cluster, 1)
    current = await cluster.broadcaster.Current(bpb.CurrentRequest(), timeout=5)
    assert current.plan.epoch == 1
    # The epoch is spent; a newer one goes through once the node is healthy.
    cluster.faults.fail.clear()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await cluster.apply(plan_of(cluster.digest, 2, (2, 3)))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert (await cluster.apply(plan_of(cluster.digest, 3, (2, 3)))).committed


async def test_a_slow_node_times_out_and_aborts(cluster: Cluster) -> None:
    await cluster.apply(plan_of(cluster.digest, 1, (1, 3)))
    cluster.faults.slow_s["node-1"] = 1.5
    reply = await cluster.apply(plan_of(cluster.digest, 2, (2, 3)), prepare_timeout_s=0.5)
    assert not reply.committed and reply.epoch == 1
    assert outcomes(reply)["node-1"][0] == "timeout"
    await asyncio.sleep(1.2)  # the slow build finishes on the node: it must not resurrect
    await _assert_still_serving(cluster, 1)


async def test_an_unreachable_node_aborts_everywhere(cluster: Cluster) -> None:
    await cluster.apply(plan_of(cluster.digest, 1, (1, 3)))
    cluster.addresses["node-3"] = "127.0.0.1:1"  # nothing listens there
    cluster.enrol()
    plan = plan_of(cluster.digest, 2, (1, 2, 3), ("node-0", "node-1", "node-2", "node-3"))
    reply = await cluster.apply(plan)
    assert not reply.committed and reply.epoch == 1
    assert outcomes(reply)["node-3"][1] == "UNAVAILABLE"
    await _assert_still_serving(cluster, 1)


async def test_a_tampered_blob_fails_prepare_and_leaves_nothing(cluster: Cluster) -> None:
    await cluster.apply(plan_of(cluster.digest, 1, (1, 3)))
    sha = hashlib.sha256(cluster.shards["layer.1"]).hexdigest()
    path = cluster.registry.blob_path(sha)
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    path.write_bytes(bytes(blob))
    reply = await cluster.apply(plan_of(cluster.digest, 2, (2, 3)))  # node-0 needs layer.1
    assert not reply.committed
    assert outcomes(reply)["node-0"][1] == "DATA_LOSS"
    assert sha not in cluster.cached("node-0")
    assert not [c for c in cluster.cached("node-0") if c.startswith(".")]
    await _assert_still_serving(cluster, 1)


async def test_a_lost_commit_reply_is_retried(cluster: Cluster) -> None:
    cluster.faults.drop_commit["node-1"] = 2
    reply = await cluster.apply(plan_of(cluster.digest, 1, (1, 3)))
    assert reply.committed
    assert cluster.faults.drop_commit["node-1"] == 0
    for node in NODES:
        assert (await cluster.info(node)).committed_epoch == 1


async def test_state_survives_a_broadcaster_restart(cluster: Cluster) -> None:
    plan = plan_of(cluster.digest, 1, (1, 3))
    await cluster.apply(plan)
    bconf = BroadcasterConfig(insecure=True, state_dir=str(cluster.tmp / "bc"),
                              signing_key=str(cluster.tmp / "keys" / "control.ed25519.pem"))
    rollout, _ = broadcaster_main.build(bconf)
    try:
        assert rollout.current == plan
        embed = hashlib.sha256(cluster.shards["embed"]).hexdigest()
        assert rollout.may_fetch("node-0", embed) and not rollout.may_fetch("node-1", embed)
    finally:
        await rollout.clients.close()


async def test_a_caller_giving_up_does_not_strand_the_rollout(cluster: Cluster) -> None:
    await cluster.apply(plan_of(cluster.digest, 1, (1, 3)))
    cluster.faults.slow_s["node-1"] = 1.0
    req = bpb.ApplyRequest(plan=plan_to_proto(plan_of(cluster.digest, 2, (2, 3))))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await cluster.broadcaster.Apply(req, timeout=0.3)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # The rollout goes on without its caller and finishes: a retry sees it done.
    again = await cluster.broadcaster.Apply(req, timeout=10)
    assert again.duplicate and again.committed
    for node in NODES:
        info = await cluster.info(node)
        assert (info.committed_epoch, info.prepared_epoch) == (2, 0), node
