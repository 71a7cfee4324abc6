"""Real node agents on 127.0.0.1 with mTLS (certificates from ``edgesplit pki``),
a real tiny model, and the test in the broadcaster's and a client's seat.

An agent can be restarted in place (same state directory, same port), as a
crashed and restarted process would be: what it remembers is what it wrote.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from edgesplit.core.types import Plan
from edgesplit.model.shard import Manifest
from edgesplit.rpc.assignments import (
    PeerInfo,
    ShardEntry,
    abort_request,
    build_assignments,
    commit_request,
    sign_assignment,
)
from edgesplit.rpc.server import RunningServer, create_server
from edgesplit.rpc.transport import Transport, TransportSettings
from edgesplit.security.keys import load_signing_key
from edgesplit.security.pki import init_pki
from edgesplit.testbed import even_plan
from edgesplit.v1 import inference_pb2, inference_pb2_grpc
from edgesplit.v1 import node_agent_pb2 as na
from edgesplit.v1 import node_agent_pb2_grpc as na_grpc
from services.node_agent.__main__ import Agent, build
from services.node_agent.config import NodeAgentConfig

NODES = ("node-0", "node-1", "node-2")
PROMPT = [3, 17, 42, 7, 99]


def transport_of(pki: Path, kind: str, name: str) -> Transport:
    d = pki / kind / name
    return Transport(TransportSettings(str(d / "ca.pem"), str(d / "tls.pem"), str(d / "tls.key")))


@dataclass
class Ring:
    tmp: Path
    pki: Path
    shard_dir: Path
    manifest: Manifest
    control: Any  # the control signing key (the broadcaster's)
    configs: dict[str, NodeAgentConfig] = field(default_factory=dict)
    servers: dict[str, RunningServer] = field(default_factory=dict)
    agents: dict[str, Agent] = field(default_factory=dict)
    addresses: dict[str, str] = field(default_factory=dict)
    publics: dict[str, bytes] = field(default_factory=dict)
    envelopes: dict[tuple[str, int], na.SignedEnvelope] = field(default_factory=dict)
    channels: dict[tuple[str, str], grpc.aio.Channel] = field(default_factory=dict)

    @classmethod
    async def start(cls, tmp: Path, shard_dir: Path, nodes: tuple[str, ...] = NODES,
                    **overrides: Any) -> Ring:
        pki = tmp / "pki"
        init_pki(pki, nodes=nodes, clients=["app"])
        control = load_signing_key(pki / "services" / "broadcaster" / "control.ed25519.pem")
        ring = cls(tmp, pki, shard_dir, Manifest.load(shard_dir), control)
        for node in nodes:
            d = pki / "nodes" / node
            ring.configs[node] = NodeAgentConfig(
                node_id=node, state_dir=str(tmp / node), shard_dir=str(shard_dir),
                control_public_key=str(d / "control.ed25519.pub.pem"), tls_ca=str(d / "ca.pem"),
                tls_cert=str(d / "tls.pem"), tls_key=str(d / "tls.key"), rpc_timeout_s=10,
                **overrides)
            await ring.boot(node)
            info = await ring.stub(node).GetInfo(na.GetInfoRequest(), timeout=5)
            ring.publics[node] = info.x25519_public
        return ring

    async def boot(self, node: str) -> Agent:
        config = self.configs[node]
        regs, agent = build(config)
        server = await create_server(config, regs)
        await server.set_serving(True)
        self.servers[node], self.agents[node] = server, agent
        self.addresses[node] = f"127.0.0.1:{server.port}"
        # Restarts come back on the same port: the peers' assignments name it.
        self.configs[node] = config.model_copy(update={"listen": self.addresses[node]})
        return agent

    async def kill(self, node: str) -> None:
        await self.agents[node].close()
        await self.servers[node].server.stop(0)

    async def restart(self, node: str) -> Agent:
        await self.kill(node)
        return await self.boot(node)

    # ---- channels, as whom --------------------------------------------------------
    def channel(self, node: str, kind: str = "services", name: str = "broadcaster"
                ) -> grpc.aio.Channel:
        key = (node, f"{kind}/{name}")
        if key not in self.channels:
            self.channels[key] = transport_of(self.pki, kind, name).aio_channel(
                self.addresses[node])
        return self.channels[key]

    def stub(self, node: str, kind: str = "services", name: str = "broadcaster"
             ) -> na_grpc.NodeAgentStub:
        return na_grpc.NodeAgentStub(self.channel(node, kind, name))

    # ---- rollouts, as the broadcaster -------------------------------------------------
    def plan(self, epoch: int, nodes: tuple[str, ...] = NODES) -> Plan:
        return even_plan(list(nodes), self.manifest.num_layers, self.manifest.model_digest,
                         epoch)

    def sign(self, plan: Plan, ttl_s: float = 600.0) -> dict[str, na.SignedEnvelope]:
        shards = {s.name: ShardEntry(s.name, s.sha256, s.bytes) for s in self.manifest.shards}
        peers = {n: PeerInfo(n, self.addresses[n], self.publics[n]) for n in self.addresses}
        out = build_assignments(plan, shards, peers, self.manifest.num_layers,
                                int((time.time() + ttl_s) * 1000), "float32",
                                list(self.addresses))
        envelopes = {n: sign_assignment(a, self.control) for n, a in out.items()}
        for n, env in envelopes.items():
            self.envelopes[(n, plan.epoch)] = env
        return envelopes

    async def prepare(self, node: str, env: na.SignedEnvelope) -> na.PrepareResponse:
        return await self.stub(node).Prepare(na.PrepareRequest(assignment=env), timeout=60)

    async def commit(self, node: str, epoch: int) -> na.CommitResponse:
        return await self.stub(node).Commit(
            commit_request(self.envelopes[(node, epoch)], self.control), timeout=10)

    async def abort(self, node: str, epoch: int) -> na.AbortResponse:
        return await self.stub(node).Abort(abort_request(
            node, epoch, self.control, self.envelopes.get((node, epoch))), timeout=10)

    async def apply(self, plan: Plan) -> None:
        envelopes = self.sign(plan)
        for node, env in envelopes.items():
            await self.prepare(node, env)
        for node in envelopes:
            await self.commit(node, plan.epoch)

    async def info(self, node: str) -> na.GetInfoResponse:
        return await self.stub(node).GetInfo(na.GetInfoRequest(), timeout=5)

    # ---- a client ------------------------------------------------------------------------
    async def generate(self, entry: str = "node-0", new: int = 6) -> list[int]:
        stub = inference_pb2_grpc.InferenceStub(self.channel(entry, "clients", "app"))
        req = inference_pb2.GenerateRequest(token_ids=inference_pb2.TokenIds(ids=PROMPT),
                                            max_new_tokens=new)
        return [r.token_id async for r in stub.Generate(req, timeout=120)]

    async def stop(self) -> None:
        for ch in self.channels.values():
            await ch.close()
        for node in list(self.servers):
            await self.kill(node)


async def code_of(call: Any) -> grpc.StatusCode:
    """The status ``call`` ends with (OK when it succeeds)."""
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK
