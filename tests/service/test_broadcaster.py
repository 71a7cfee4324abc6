"""Broadcaster shard registry and fetching: encrypted at rest, only to assigned
nodes, chunked and resumable (see broadcaster_cluster.py for the set-up)."""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from edgesplit.security.shards import decrypt_shard
from edgesplit.v1 import broadcaster_pb2 as bpb
from edgesplit.v1 import broadcaster_pb2_grpc as bpb_grpc
from edgesplit.v1 import node_agent_pb2 as na
from services.broadcaster.registry import Registry
from services.node_agent.shards import ShardStore
from tests.service.broadcaster_cluster import LAYERS, NODES, Cluster, cluster, plan_of

__all__ = ["cluster"]  # the fixture, re-exported for pytest


# ---- registry ---------------------------------------------------------------------
async def test_registry_stores_only_ciphertext(cluster: Cluster) -> None:
    listed = await cluster.broadcaster.ListShards(bpb.ListShardsRequest(), timeout=5)
    names = {s.name for s in listed.shards}
    assert names == {*cluster.shards, "meta"}
    assert {s.model_digest for s in listed.shards} == {cluster.digest}
    reg = cluster.registry
    for s in listed.shards:
        blob = reg.blob_path(s.sha256).read_bytes()
        if s.name == "meta":
            continue
        plain = cluster.shards[s.name]
        assert s.size_bytes == len(plain)
        assert plain[:64] not in blob and plain[-64:] not in blob  # no plaintext at rest
        assert decrypt_shard(reg.key(s.sha256), blob, s.sha256) == plain
    keys = reg.root / "keys.json"
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    # Importing again is a no-op: same keys, same blobs.
    before = keys.read_bytes()
    Registry(reg.root).import_shard_dir(cluster.tmp / "src")
    assert keys.read_bytes() == before


async def test_fetch_refused_to_unassigned_nodes(cluster: Cluster) -> None:
    embed = hashlib.sha256(cluster.shards["embed"]).hexdigest()
    layer3 = hashlib.sha256(cluster.shards["layer.3"]).hexdigest()

    async def fetch(node: str, sha: str) -> list[bpb.FetchShardResponse]:
        call = cluster.broadcaster.FetchShard(
            bpb.FetchShardRequest(sha256=sha, node_id=node), timeout=5)
        return [c async for c in call]

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await fetch("node-0", embed)  # nothing rolled out yet
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await fetch("node-0", "00" * 32)  # unknown digests look the same: no probing
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    reply = await cluster.apply(plan_of(cluster.digest, 1, (1, 3)))
    assert reply.committed
    assert await fetch("node-0", embed)  # its own shard
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await fetch("node-1", embed)  # node-0's shard
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert await fetch("node-2", layer3)


async def test_fetch_streams_chunks_and_resumes_from_an_offset(cluster: Cluster) -> None:
    await cluster.apply(plan_of(cluster.digest, 1, (1, 3)))
    sha = hashlib.sha256(cluster.shards["layer.1"]).hexdigest()

    async def chunks(offset: int) -> list[bpb.FetchShardResponse]:
        call = cluster.broadcaster.FetchShard(
            bpb.FetchShardRequest(sha256=sha, node_id="node-1", offset=offset), timeout=5)
        return [c async for c in call]

    whole = await chunks(0)
    assert len(whole) >= 4 and all(len(c.data) <= 1 << 20 for c in whole)
    blob = b"".join(c.data for c in whole)
    assert [c.offset for c in whole] == [sum(len(x.data) for x in whole[:i])
                                         for i in range(len(whole))]
    assert whole[0].total_bytes == len(blob)
    resumed = await chunks((1 << 20) + 7)
    assert resumed[0].offset == (1 << 20) + 7
    assert b"".join(c.data for c in resumed) == blob[(1 << 20) + 7:]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await chunks(len(blob) + 1)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    key = cluster.registry.key(sha)
    assert decrypt_shard(key, blob, sha) == cluster.shards["layer.1"]


# ---- node side: resumable fetch ------------------------------------------------------
class _DroppingStub:
    """FetchShard that drops the stream after one chunk, the first time."""

    def __init__(self, real: bpb_grpc.BroadcasterStub) -> None:
        self.real, self.offsets, self.dropped = real, [], False

    def FetchShard(self, request: bpb.FetchShardRequest, timeout: float) -> Any:
        self.offsets.append(request.offset)
        stream = self.real.FetchShard(request, timeout=timeout)

        async def gen() -> AsyncIterator[bpb.FetchShardResponse]:
            async for chunk in stream:
                yield chunk
                if not self.dropped:
                    self.dropped = True
                    raise _unavailable()
        return gen()


def _unavailable() -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(),
                                grpc.aio.Metadata(), "dropped")


async def test_node_fetch_resumes_after_a_dropped_stream(cluster: Cluster) -> None:
    from edgesplit.security.keys import load_agreement_key

    await cluster.apply(plan_of(cluster.digest, 1, (1, 3)))
    node_key = load_agreement_key(cluster.tmp / "node-1" / "node-1.x25519.pem")
    # A fresh store (empty cache) replaying node-1's fetch of layer.1 through a bad link.
    store = ShardStore("node-1", node_key, cluster.tmp / "fresh", broadcaster="unused")
    envelope = await _current_assignment(cluster, "node-1")
    ref = next(r for r in envelope.shards if r.name == "layer.1")
    stub = _DroppingStub(cluster.broadcaster)
    await store._fetch(stub, ref, time.monotonic() + 10)
    assert stub.offsets[0] == 0 and stub.offsets[1] == 1 << 20
    assert (cluster.tmp / "fresh" / ref.sha256).read_bytes() == cluster.shards["layer.1"]
    assert os.listdir(cluster.tmp / "fresh") == [ref.sha256]


async def _current_assignment(cluster: Cluster, node: str) -> na.Assignment:
    """An assignment like the broadcaster's for epoch 1 (same shards, keys
    freshly wrapped to the node), to replay the node's fetch outside Prepare."""
    from edgesplit.rpc.assignments import PeerInfo, build_assignments, shard_key_context
    from edgesplit.security.keys import agreement_public_from_bytes
    from edgesplit.security.shards import wrap_key

    reg = cluster.registry
    model = reg.model(cluster.digest)
    assert model is not None
    peers = {}
    for n in NODES:
        info = await cluster.info(n)
        peers[n] = PeerInfo(n, cluster.addresses[n], info.x25519_public)
    plan = plan_of(cluster.digest, 1, (1, 3))
    out = build_assignments(
        plan, model.shards, peers, LAYERS, int(time.time() * 1000) + 60_000,
        wrap=lambda n, s: wrap_key(reg.key(s.sha256),
                                   agreement_public_from_bytes(peers[n].x25519_public),
                                   shard_key_context(n, s.sha256)))
    return out[node]


async def test_node_uses_its_local_shard_dir_first(cluster: Cluster) -> None:
    """A node with the model on disk (and a broadcaster) fetches nothing, the
    meta shard included: its bundle digest is computed from the local files."""
    from edgesplit.rpc.errors import Precondition
    from edgesplit.security.keys import generate_agreement_key

    assignment = await _current_assignment(cluster, "node-0")
    local = ShardStore("node-0", generate_agreement_key(), cluster.tmp / "c1",
                       local_dir=str(cluster.tmp / "src"))
    assert await local.ensure(assignment, 5.0) == (0, len(assignment.shards))
    assert all(local.find(r) is not None for r in assignment.shards)
    assert not os.listdir(cluster.tmp / "c1")
    bare = ShardStore("node-0", generate_agreement_key(), cluster.tmp / "c2")
    with pytest.raises(Precondition):  # nothing local and nowhere to fetch from
        await bare.ensure(assignment, 5.0)
