"""Shards an agent must not load: a cached shard tampered with on disk (read
again after a restart), and a fetched blob that authenticates but is not the
shard its assignment names (docs/architecture.md §12).

Real broadcaster, real agents that fetch from it; the cache test runs the
real model (torch runners read through ``StoreSource.read_part``).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from google.rpc import code_pb2

from edgesplit.model.shard import Manifest
from edgesplit.rpc.convert import plan_to_proto
from edgesplit.rpc.server import RunningServer, create_server
from edgesplit.security.keys import ensure_dev_keys
from edgesplit.testbed import ensure_model, plan_from_cuts
from edgesplit.v1 import broadcaster_pb2 as bpb
from edgesplit.v1 import broadcaster_pb2_grpc as bpb_grpc
from edgesplit.v1 import inference_pb2, inference_pb2_grpc
from edgesplit.v1 import node_agent_pb2 as na
from edgesplit.v1 import node_agent_pb2_grpc as na_grpc
from services.broadcaster import __main__ as broadcaster_main
from services.broadcaster.config import BroadcasterConfig
from services.node_agent import __main__ as agent_main
from services.node_agent.config import NodeAgentConfig
from tests.service.broadcaster_cluster import TRANSPORT, Cluster, cluster, plan_of, write_inventory

__all__ = ["cluster"]  # the fixture, re-exported for pytest
NODES = ("node-0", "node-1")


@dataclass
class Fetching:
    """A broadcaster with the real model and two agents holding no shard directory."""

    tmp: Path
    manifest: Manifest
    broadcaster: bpb_grpc.BroadcasterStub
    configs: dict[str, NodeAgentConfig]
    servers: dict[str, RunningServer]
    agents: dict[str, Any]
    channels: list[Any]

    async def apply(self, epoch: int, cut: int) -> bpb.ApplyResponse:
        plan = plan_from_cuts(NODES, [cut], 4, self.manifest.model_digest, epoch)
        return await self.broadcaster.Apply(bpb.ApplyRequest(plan=plan_to_proto(plan)),
                                            timeout=60)

    def stub(self, node: str) -> Any:
        ch = TRANSPORT.aio_channel(self.configs[node].listen)
        self.channels.append(ch)
        return ch

    async def info(self, node: str) -> na.GetInfoResponse:
        return await na_grpc.NodeAgentStub(self.stub(node)).GetInfo(na.GetInfoRequest(), timeout=5)

    async def generate(self) -> list[int]:
        stub = inference_pb2_grpc.InferenceStub(self.stub("node-0"))
        req = inference_pb2.GenerateRequest(token_ids=inference_pb2.TokenIds(ids=[5, 9, 13, 2]),
                                            max_new_tokens=5)
        return [r.token_id async for r in stub.Generate(req, timeout=120)]

    async def boot(self, node: str) -> None:
        regs, agent = agent_main.build(self.configs[node])  # torch runners, fetched shards
        server = await create_server(self.configs[node], regs)
        await server.set_serving(True)
        self.servers[node], self.agents[node] = server, agent
        self.configs[node] = self.configs[node].model_copy(
            update={"listen": f"127.0.0.1:{server.port}"})

    async def restart(self, node: str) -> None:
        await self.agents[node].close()
        await self.servers[node].server.stop(0)
        await self.boot(node)


@pytest.fixture
async def fetching(tmp_path: Path) -> AsyncIterator[Fetching]:
    shards = ensure_model(tmp_path / "model", tmp_path / "src", layers=4, hidden=64)
    ensure_dev_keys(tmp_path / "keys", "control")
    bconf = BroadcasterConfig(insecure=True, state_dir=str(tmp_path / "bc"),
                              shard_dir=str(shards),
                              signing_key=str(tmp_path / "keys" / "control.ed25519.pem"),
                              inventory=str(tmp_path / "inventory.json"), rpc_timeout_s=20.0)
    rollout, regs = broadcaster_main.build(bconf)
    bserver = await create_server(bconf, regs)
    f = Fetching(tmp_path, Manifest.load(shards), bpb_grpc.BroadcasterStub(
        TRANSPORT.aio_channel(f"127.0.0.1:{bserver.port}")), {}, {}, {}, [])
    for node in NODES:
        f.configs[node] = NodeAgentConfig(
            node_id=node, insecure=True, state_dir=str(tmp_path / node),
            broadcaster=f"127.0.0.1:{bserver.port}",
            control_public_key=str(tmp_path / "keys" / "control.ed25519.pub.pem"))
        await f.boot(node)
    write_inventory(tmp_path / "inventory.json",
                    {n: c.listen for n, c in f.configs.items()}, tmp_path)
    yield f
    await rollout.clients.close()
    for ch in f.channels:
        await ch.close()
    for node in NODES:
        await f.agents[node].close()
        await f.servers[node].server.stop(0)
    await bserver.server.stop(0)


async def test_a_tampered_cached_shard_is_refused_after_a_restart(fetching: Fetching) -> None:
    f = fetching
    assert (await f.apply(1, 2)).committed  # node-1 fetches layers 2, 3
    assert (await f.apply(2, 3)).committed  # ... now runs layer 3 only; layer 2 stays cached
    tokens = await f.generate()
    await f.restart("node-1")  # the epoch-1 runner is gone: layer 2 must be read again
    assert (await f.info("node-1")).committed_epoch == 2
    layer2 = next(s for s in f.manifest.shards if s.name == "layer.2")
    cached = f.tmp / "node-1" / "shards" / layer2.sha256
    data = bytearray(cached.read_bytes())
    data[-3] ^= 0x01  # one bit in the weights: still loads, no longer the shard
    cached.write_bytes(bytes(data))

    reply = await f.apply(3, 2)
    assert not reply.committed
    assert {n.node_id: n.code for n in reply.nodes}["node-1"] == code_pb2.FAILED_PRECONDITION
    info = await f.info("node-1")
    assert (info.committed_epoch, info.prepared_epoch) == (2, 0)
    assert await f.generate() == tokens


@pytest.mark.parametrize("change", ["same size, other bytes", "longer", "shorter"])
async def test_a_blob_that_authenticates_but_is_another_shard_leaves_nothing(
        cluster: Cluster, change: str) -> None:
    """The registry serves a blob sealed for the right digest under the key it
    wraps, so it decrypts and authenticates; its plaintext is not the shard."""
    await cluster.apply(plan_of(cluster.digest, 1, (1, 3)))
    real = cluster.shards["layer.1"]
    sha = hashlib.sha256(real).hexdigest()
    other = {"same size, other bytes": bytes(b ^ 0xFF for b in real),
             "longer": real + b"\0", "shorter": real[:-1]}[change]
    cluster.registry._store(sha, iter([other]))  # re-sealed: a compromised registry
    reply = await cluster.apply(plan_of(cluster.digest, 2, (2, 3)))  # node-0 needs layer.1
    assert not reply.committed
    assert {n.node_id: n.code for n in reply.nodes}["node-0"] == code_pb2.FAILED_PRECONDITION
    assert sha not in cluster.cached("node-0")
    assert not [c for c in cluster.cached("node-0") if c.startswith(".")]  # no temp file
    info = await cluster.info("node-0")
    assert (info.committed_epoch, info.prepared_epoch) == (1, 0)
