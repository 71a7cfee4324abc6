"""In-process broadcaster + node agents for the service tests: a real
broadcaster server and real node-agent servers (fake segment runners, so no
torch) on port 0, with faults to inject.

Shards here are random bytes under a hand-written manifest: the registry and
the fetch path treat shards as opaque, digest-checked files.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from edgesplit.core.types import Plan, Segment
from edgesplit.model.errors import ModelFileError
from edgesplit.model.fake import FakeSegmentRunner
from edgesplit.rpc.convert import duration, plan_to_proto, status_name
from edgesplit.rpc.server import RunningServer, create_server
from edgesplit.rpc.transport import LOOPBACK_PLAINTEXT, Transport
from edgesplit.security.keys import ensure_dev_keys
from edgesplit.testbed import node_agreement_key, plan_from_cuts
from edgesplit.v1 import broadcaster_pb2 as bpb
from edgesplit.v1 import broadcaster_pb2_grpc as bpb_grpc
from edgesplit.v1 import node_agent_pb2 as na
from edgesplit.v1 import node_agent_pb2_grpc as na_grpc
from services.broadcaster import __main__ as broadcaster_main
from services.broadcaster.config import BroadcasterConfig
from services.broadcaster.registry import Registry
from services.node_agent import __main__ as agent_main
from services.node_agent.config import NodeAgentConfig

TRANSPORT = Transport(LOOPBACK_PLAINTEXT)  # the tests' own client side: plaintext, loopback

LAYERS = 4
BIG = 3 * (1 << 20) + 12345  # layer.1: several 1 MiB chunks and a partial one
NODES = ("node-0", "node-1", "node-2")


def fake_shard_dir(root: Path, seed: int = 0) -> tuple[str, dict[str, bytes]]:
    """A shard directory of random shards; returns (model digest, name -> bytes)."""
    rng = random.Random(seed)
    root.mkdir(parents=True)
    shards, data = [], {}
    for i, name in enumerate(["embed", *[f"layer.{i}" for i in range(LAYERS)], "head"]):
        body = rng.randbytes(BIG if name == "layer.1" else 5000 + i)
        (root / f"{name}.safetensors").write_bytes(body)
        data[name] = body
        shards.append({"name": name, "file": f"{name}.safetensors", "bytes": len(body),
                       "sha256": hashlib.sha256(body).hexdigest(), "dtype": "float32",
                       "params": len(body) // 4})
    (root / "config.json").write_text(json.dumps({"model_type": "qwen3",
                                                  "num_hidden_layers": LAYERS}))
    (root / "tokenizer.json").write_text('{"fake": true}')
    digest = hashlib.sha256(f"model-{seed}".encode()).hexdigest()
    (root / "manifest.json").write_text(json.dumps({
        "model_digest": digest, "family": "qwen3", "num_layers": LAYERS, "hidden_size": 8,
        "dtype": "float32", "tied": False, "shards": shards, "version": 1}))
    return digest, data


def plan_of(digest: str, epoch: int, cuts: tuple[int, ...], nodes: tuple[str, ...] = NODES
            ) -> Plan:
    return plan_from_cuts(nodes[: len(cuts) + 1], cuts, LAYERS, digest, epoch)


@dataclass
class Faults:
    """What the fake runners and a flaky interceptor should do wrong."""

    fail: set[str] = field(default_factory=set)  # nodes whose runner build raises
    slow_s: dict[str, float] = field(default_factory=dict)  # nodes whose build is slow
    drop_commit: dict[str, int] = field(default_factory=dict)  # node -> Commits to drop
    prepares: dict[str, int] = field(default_factory=dict)  # node -> Prepare calls seen


class Flaky(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Counts Prepares; answers the first N Commits UNAVAILABLE (a lost reply)."""

    def __init__(self, node: str, faults: Faults) -> None:
        self.node, self.faults = node, faults

    async def intercept_service(self, continuation: Any, details: Any) -> Any:
        if details.method.endswith("/Prepare"):
            self.faults.prepares[self.node] = self.faults.prepares.get(self.node, 0) + 1
        handler = await continuation(details)
        if details.method.endswith("/Commit") and self.faults.drop_commit.get(self.node, 0) > 0:
            self.faults.drop_commit[self.node] -= 1

            async def lose_reply(request: Any, context: Any) -> Any:
                await handler.unary_unary(request, context)  # the node does commit...
                await context.abort(grpc.StatusCode.UNAVAILABLE, "injected")  # ...reply lost

            return grpc.unary_unary_rpc_method_handler(
                lose_reply, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        return handler


def fake_factory(node: str, faults: Faults) -> Callable[[Segment, Mapping[str, str]], Any]:
    def make(seg: Segment, digests: Mapping[str, str]) -> Any:
        if node in faults.fail:
            raise ModelFileError(f"injected failure on {node}")
        time.sleep(faults.slow_s.get(node, 0.0))  # runs in the executor, like torch loading
        return FakeSegmentRunner(seg.start, seg.end, seg.has_embed, seg.has_head)
    return make


@dataclass
class Cluster:
    tmp: Path
    digest: str
    shards: dict[str, bytes]
    faults: Faults
    broadcaster: bpb_grpc.BroadcasterStub
    registry: Registry
    addresses: dict[str, str]
    servers: list[RunningServer]
    channels: list[grpc.aio.Channel]

    def node(self, node_id: str) -> na_grpc.NodeAgentStub:
        ch = TRANSPORT.aio_channel(self.addresses[node_id])
        self.channels.append(ch)
        return na_grpc.NodeAgentStub(ch)

    async def info(self, node_id: str) -> na.GetInfoResponse:
        return await self.node(node_id).GetInfo(na.GetInfoRequest(), timeout=5)

    async def apply(self, plan: Plan, **kw: Any) -> bpb.ApplyResponse:
        if "prepare_timeout_s" in kw:
            kw["prepare_timeout"] = duration(kw.pop("prepare_timeout_s"))
        req = bpb.ApplyRequest(plan=plan_to_proto(plan), **kw)
        return await self.broadcaster.Apply(req, timeout=30)

    def enrol(self, **override: Any) -> None:
        """Rewrite the broadcaster's inventory from ``addresses`` (re-read on the next Apply)."""
        write_inventory(self.tmp / "inventory.json", self.addresses, self.tmp, **override)

    def cached(self, node_id: str) -> set[str]:
        return {p.name for p in (self.tmp / node_id / "shards").iterdir()}


def write_inventory(path: Path, addresses: Mapping[str, str], state_root: Path,
                    **override: Any) -> None:
    """The broadcaster's inventory: each node trusted, at its address, with the
    X25519 key its agent keeps under ``state_root / node``; ``override`` replaces
    fields per node (``{"node-1": {...}}``)."""
    nodes = [{"id": n, "address": a, "trust": "trusted", "flops_per_s": 1e9,
              "agreement_public_key": node_agreement_key(state_root / n, n),
              **override.get(n, {})} for n, a in addresses.items()]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"nodes": nodes}))
    tmp.replace(path)


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    digest, shards = fake_shard_dir(tmp_path / "src")
    ensure_dev_keys(tmp_path / "keys", "control")
    bconf = BroadcasterConfig(insecure=True, state_dir=str(tmp_path / "bc"), shard_dir=str(tmp_path / "src"),
                              signing_key=str(tmp_path / "keys" / "control.ed25519.pem"),
                              inventory=str(tmp_path / "inventory.json"), rpc_timeout_s=5.0)
    rollout, regs = broadcaster_main.build(bconf)
    bserver = await create_server(bconf, regs)
    baddr = f"127.0.0.1:{bserver.port}"
    faults, servers, addresses = Faults(), [bserver], {}
    for node in NODES:
        conf = NodeAgentConfig(node_id=node, insecure=True, state_dir=str(tmp_path / node), broadcaster=baddr,
                               control_public_key=str(tmp_path / "keys" /
                                                      "control.ed25519.pub.pem"))
        nregs, _ = agent_main.build(conf, fake_factory(node, faults))
        running = await create_server(conf, nregs, [Flaky(node, faults)])
        servers.append(running)
        addresses[node] = f"127.0.0.1:{running.port}"
    write_inventory(tmp_path / "inventory.json", addresses, tmp_path)
    channel = TRANSPORT.aio_channel(baddr)
    c = Cluster(tmp_path, digest, shards, faults, bpb_grpc.BroadcasterStub(channel),
                rollout.registry, addresses, servers, [channel])
    yield c
    await rollout.clients.close()
    for ch in c.channels:
        await ch.close()
    for s in servers:
        await s.server.stop(None)


def outcomes(reply: bpb.ApplyResponse) -> dict[str, tuple[str, str]]:
    """node -> (state, status code name; "" for OK) of a rollout, as plain names."""
    return {n.node_id: (bpb.RolloutState.Name(n.state).removeprefix("ROLLOUT_STATE_").lower(),
                        status_name(n.code) if n.code else "") for n in reply.nodes}
