"""Several real node agents as in-process gRPC servers on 127.0.0.1 (port 0),
rolled out with signed assignments, for tests that need many plans quickly."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgesplit.core.types import Plan
from edgesplit.model.shard import Manifest
from edgesplit.rpc.assignments import (
    PeerInfo,
    ShardEntry,
    build_assignments,
    commit_request,
    sign_assignment,
)
from edgesplit.rpc.server import create_server
from edgesplit.rpc.transport import LOOPBACK_PLAINTEXT, Transport
from edgesplit.security.keys import generate_signing_key, save_public_key
from edgesplit.testbed import even_plan
from edgesplit.v1 import inference_pb2, inference_pb2_grpc
from edgesplit.v1 import node_agent_pb2 as na
from edgesplit.v1 import node_agent_pb2_grpc as na_grpc
from services.node_agent.__main__ import build
from services.node_agent.config import NodeAgentConfig


@dataclass
class Cluster:
    shard_dir: Path
    manifest: Manifest
    control: Any
    addresses: dict[str, str] = field(default_factory=dict)
    publics: dict[str, bytes] = field(default_factory=dict)
    servers: list[Any] = field(default_factory=list)
    agents: list[Any] = field(default_factory=list)
    channels: dict[str, Any] = field(default_factory=dict)
    transport: Transport = field(default_factory=lambda: Transport(LOOPBACK_PLAINTEXT))  # plaintext, loopback
    epoch: int = 0

    @classmethod
    async def start(cls, n: int, shard_dir: Path, tmp: Path, make_runner: Any = None,
                    **overrides: Any) -> Cluster:
        control = generate_signing_key()
        save_public_key(control.public_key(), tmp / "control.pub.pem")
        c = cls(shard_dir, Manifest.load(shard_dir), control)
        for i in range(n):
            node = f"node-{i}"
            config = NodeAgentConfig(node_id=node, insecure=True, state_dir=str(tmp / node),
                                     shard_dir=str(shard_dir),
                                     control_public_key=str(tmp / "control.pub.pem"),
                                     rpc_timeout_s=20, **overrides)
            regs, agent = build(config, make_runner)
            server = await create_server(config, regs)
            await server.set_serving(True)
            c.servers.append(server)
            c.agents.append(agent)
            c.addresses[node] = f"127.0.0.1:{server.port}"
            info = await c.stub(node).GetInfo(na.InfoRequest(), timeout=5)
            c.publics[node] = info.x25519_public
        return c

    def channel(self, node: str) -> Any:
        if node not in self.channels:
            self.channels[node] = self.transport.aio_channel(self.addresses[node])
        return self.channels[node]

    def stub(self, node: str) -> na_grpc.NodeAgentStub:
        return na_grpc.NodeAgentStub(self.channel(node))

    def inference(self, node: str = "node-0") -> inference_pb2_grpc.InferenceStub:
        return inference_pb2_grpc.InferenceStub(self.channel(node))

    def plan(self, nodes: list[str]) -> Plan:
        return even_plan(nodes, self.manifest.num_layers, self.manifest.model_digest,
                         self.epoch + 1)

    async def apply(self, plan: Plan, wire_dtype: str = "float32",
                    trusted: list[str] | None = None) -> None:
        shards = {s.name: ShardEntry(s.name, s.sha256, s.bytes) for s in self.manifest.shards}
        peers = {n: PeerInfo(n, self.addresses[n], self.publics[n]) for n in self.addresses}
        assignments = build_assignments(plan, shards, peers, self.manifest.num_layers,
                                        int((time.time() + 600) * 1000), wire_dtype,
                                        list(self.addresses) if trusted is None else trusted)
        envelopes = {node: sign_assignment(a, self.control) for node, a in assignments.items()}
        for node, env in envelopes.items():
            await self.stub(node).Prepare(na.PrepareRequest(assignment=env), timeout=60)
        for node, env in envelopes.items():
            await self.stub(node).Commit(commit_request(env, self.control), timeout=10)
        self.epoch = plan.epoch

    async def generate(self, ids: list[int], new: int, entry: str = "node-0",
                       **kw: Any) -> list[int]:
        req = inference_pb2.GenerateRequest(token_ids=ids, max_new_tokens=new, **kw)
        return [r.token_id async for r in self.inference(entry).Generate(req, timeout=120)]

    async def stop(self) -> None:
        for ch in self.channels.values():
            await ch.close()
        for agent in self.agents:
            await agent.close()
        for s in self.servers:
            await s.server.stop(0)
