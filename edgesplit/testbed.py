"""A local test bed: node agents as processes on 127.0.0.1, a locally generated
model, a static plan signed with a development key, emulated conditions.

Used by ``edgesplit testbed``, the benchmarks, the demo and the e2e tests.
State (ready files, logs, keys, ``testbed.json``) lives under one directory,
and so do its certificates (``pki/``, :mod:`edgesplit.bedpki`): every agent
serves mTLS with its own, and the bed's own calls present the identity the
authorisation table expects (docs/architecture.md §12). Plaintext only with
``insecure=True`` (loopback).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import psutil

from edgesplit import procs
from edgesplit.bedpki import ADMIN, CLIENT, PKI_DIR, LocalPki, service, transport_for
from edgesplit.core.route import route_from_cuts
from edgesplit.core.types import Epoch, NodeId, Plan
from edgesplit.rpc.assignments import (
    PeerInfo,
    ShardEntry,
    build_assignments,
    commit_request,
    sign_assignment,
)
from edgesplit.rpc.transport import Transport
from edgesplit.security.identity import Identity, Role
from edgesplit.security.keys import ensure_dev_keys, public_bytes
from edgesplit.v1 import node_agent_pb2 as na
from edgesplit.v1 import node_agent_pb2_grpc as na_grpc
from edgesplit.v1 import testbed_admin_pb2 as ta
from edgesplit.v1 import testbed_admin_pb2_grpc as ta_grpc

ROOT = procs.ROOT
DEFAULT_DIR = Path("var/testbed")
INVENTORY = "inventory.json"  # the bed as the control plane's inventory (write_inventory)
# The bed's static rollout (Prepare/Commit) acts as the broadcaster would.
ROLLOUT = service(Role.BROADCASTER)


def ensure_model(model_dir: Path, shard_dir: Path, *, family: str = "qwen3", layers: int = 6,
                 hidden: int = 128, heads: int = 4, kv_heads: int = 2, seed: int = 0) -> Path:
    """Generate (once) a seeded random model and its shards; returns the shard dir."""
    from edgesplit.model.shard import MANIFEST, shard_model
    from edgesplit.model.tiny import write_tiny_model

    if not (model_dir / "config.json").exists():
        write_tiny_model(model_dir, family=family, layers=layers, hidden=hidden, heads=heads,
                         kv_heads=kv_heads, seed=seed)
    if not (shard_dir / MANIFEST).exists():
        shard_model(model_dir, shard_dir)
    return shard_dir


def even_plan(nodes: Sequence[str], num_layers: int, digest: str, epoch: int = 1) -> Plan:
    """Layers split as evenly as possible in node order; the first node is the
    entry (embed, its layers, and the closing head segment)."""
    n = len(nodes)
    cuts = [round(i * num_layers / n) for i in range(1, n)]
    return plan_from_cuts(nodes, cuts, num_layers, digest, epoch)


def plan_from_cuts(nodes: Sequence[str], cuts: Sequence[int], num_layers: int, digest: str,
                   epoch: int) -> Plan:
    """One route over ``nodes`` (the first is the entry) cut at ``cuts``, in the
    production shape (``core.route.route_from_cuts``)."""
    entry = NodeId(nodes[0])
    route = route_from_cuts(entry, [NodeId(n) for n in nodes], cuts, num_layers)
    return Plan(Epoch(epoch), digest, (route,))


def node_agreement_key(state_dir: Path, node_id: str) -> str:
    """Base64 of a node agent's X25519 public key, made (once) where the agent
    started with ``--state-dir state_dir`` loads it: enrolling a node's key in
    the control plane's inventory before the node first starts."""
    keys = ensure_dev_keys(state_dir, node_id)
    return base64.b64encode(public_bytes(keys.agreement.public_key())).decode()


@dataclass
class NodeProc:
    node_id: str
    address: str
    pid: int
    log: str
    x25519_public: str = ""  # hex


@dataclass
class Testbed:
    """Handle on a running test bed (also (de)serialised as ``testbed.json``)."""

    __test__ = False  # a name pytest would otherwise try to collect

    base: str
    shard_dir: str
    nodes: list[NodeProc] = field(default_factory=list)
    epoch: int = 0
    control_key: str = ""
    # node id -> how it was started (procs.Launch fields), to start it again
    commands: dict[str, Any] = field(default_factory=dict)
    pki: str = ""  # its certificates' root (bedpki.LocalPki); "": plaintext (insecure)

    # ---- lifecycle -------------------------------------------------------------
    @classmethod
    def up(cls, n: int, shard_dir: Path, base: Path = DEFAULT_DIR, *,
           extra_args: Sequence[str] = (), env: dict[str, str] | None = None,
           timeout_s: float = 120.0, admin: bool = True,
           node_ids: Sequence[str] = (), listen: dict[str, str] | None = None,
           torch_threads: int = 0, pki: LocalPki | None = None,
           insecure: bool = False, ring_waves: int = 0) -> Testbed:
        """Start ``n`` agents, each with its own certificate from ``pki``
        (default: ``base/pki``, made here); ``insecure``: plaintext instead.
        ``ring_waves``: the entries' ``--ring-waves`` (0: the agents' default;
        :func:`shared_host_waves` where the agents' real compute shares this
        machine)."""
        base.mkdir(parents=True, exist_ok=True)
        ensure_dev_keys(base / "keys", "control")
        control_pub = base / "keys" / "control.ed25519.pub.pem"
        if not insecure:
            pki = pki or LocalPki(base / PKI_DIR)
            for ident in (ADMIN, CLIENT):  # for `edgesplit status`/`generate` to find
                pki.component(ident)
        bed = cls(str(base), str(shard_dir), control_key=str(base / "keys"),
                  pki=str(pki.root.resolve()) if pki and not insecure else "")
        started = []
        for i in range(n):
            node_id = node_ids[i] if node_ids else f"node-{i}"
            args = ["--node-id", node_id, "--state-dir", str(base / node_id),
                    "--shard-dir", str(shard_dir), "--control-public-key", str(control_pub),
                    *(["--testbed-admin"] if admin else []),
                    # Agents share this machine: each reports its own load.
                    "--utilization-scope", "process",
                    *(["--ring-waves", str(ring_waves)] if ring_waves else []),
                    *(["--torch-threads", str(torch_threads)] if torch_threads else []),
                    *extra_args]
            tls, _ = procs.credentials("node_agent", base, args, pki, insecure)
            launch = procs.prepare("node_agent", base, args, {**QUIET_THREADS, **(env or {})},
                                   (listen or {}).get(node_id, "127.0.0.1:0"),
                                   log_name=node_id, detach=True, tls=tls)
            started.append((launch, launch.popen()))  # all at once: they start in parallel
        addresses = procs.wait_ready(started, timeout_s)
        for (launch, proc), address in zip(started, addresses, strict=True):
            node_id = launch.cmd[launch.cmd.index("--node-id") + 1]
            bed.nodes.append(NodeProc(node_id, address, proc.pid, str(launch.log)))
            bed.commands[node_id] = launch.to_json()
        for node in bed.nodes:
            node.x25519_public = bed.info(node.node_id).x25519_public.hex()
        bed.save()
        bed.write_inventory(base / INVENTORY)  # for a broadcaster: --inventory BASE/inventory.json
        return bed

    def kill(self, node_id: str) -> None:
        """SIGKILL one node agent: a crash, no goodbye."""
        node = self.node(node_id)
        try:
            os.kill(node.pid, signal.SIGKILL)
            os.waitpid(node.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass

    def restart(self, node_id: str, timeout_s: float = 60.0) -> None:
        """Start a killed node again: same command line, same port (so the
        plans and peers that name its address reach it), same state directory."""
        node = self.node(node_id)
        launch = procs.Launch.from_json(self.commands[node_id])
        again = procs.relaunch(launch, node.address, timeout_s)
        node.pid, node.address = again.pid, again.address
        self.save()

    def down(self, timeout_s: float = 10.0) -> None:
        for node in self.nodes:
            procs.terminate(node.pid, timeout_s)
        Path(self.base, "testbed.json").unlink(missing_ok=True)

    def save(self) -> None:
        Path(self.base, "testbed.json").write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, base: Path = DEFAULT_DIR) -> Testbed:
        path = base / "testbed.json"
        if not path.exists():
            raise FileNotFoundError(f"no test bed at {base} (run `edgesplit testbed up`)")
        raw = json.loads(path.read_text())
        raw["nodes"] = [NodeProc(**n) for n in raw["nodes"]]
        return cls(**raw)

    # ---- talking to nodes ---------------------------------------------------------
    @cached_property
    def local_pki(self) -> LocalPki | None:
        """Its certificates (None: an insecure, plaintext bed)."""
        return LocalPki(Path(self.pki)) if self.pki else None

    @property
    def secure(self) -> bool:
        return bool(self.pki)

    def transport(self, identity: Identity = ADMIN) -> Transport:
        """Channels to the bed's services as ``identity`` (plaintext if insecure)."""
        return transport_for(self.local_pki, identity)

    def node(self, node_id: str) -> NodeProc:
        for n in self.nodes:
            if n.node_id == node_id:
                return n
        raise KeyError(node_id)

    @contextmanager
    def agent(self, node_id: str, as_: Identity = ADMIN) -> Iterator[na_grpc.NodeAgentStub]:
        """A NodeAgent stub, calling as ``as_``, on a channel closed afterwards."""
        with self.transport(as_).sync_channel(self.node(node_id).address) as ch:
            yield na_grpc.NodeAgentStub(ch)

    def info(self, node_id: str) -> na.GetInfoResponse:
        with self.agent(node_id) as agent:
            return agent.GetInfo(na.GetInfoRequest(), timeout=10)

    def set_conditions(self, node_id: str, replace: bool = False, **fields: Any) -> ta.Conditions:
        with self.transport(ADMIN).sync_channel(self.node(node_id).address) as ch:
            req = ta.SetConditionsRequest(conditions=ta.Conditions(**fields), replace=replace)
            return ta_grpc.TestbedAdminStub(ch).SetConditions(req, timeout=10).conditions

    def manifest(self) -> Any:
        from edgesplit.model.shard import Manifest

        return Manifest.load(self.shard_dir)

    def signed_assignments(self, plan: Plan, ttl_s: float = 3600.0, wire_dtype: str = "float32",
                           trusted: Sequence[str] = ()) -> dict[str, na.SignedEnvelope]:
        manifest = self.manifest()
        keys = ensure_dev_keys(Path(self.control_key), "control")
        shards = {s.name: ShardEntry(s.name, s.sha256, s.bytes) for s in manifest.shards}
        peers = {n.node_id: PeerInfo(n.node_id, n.address, bytes.fromhex(n.x25519_public))
                 for n in self.nodes}
        expires = int((time.time() + ttl_s) * 1000)
        unsigned = build_assignments(plan, shards, peers, manifest.num_layers, expires,
                                     wire_dtype, trusted or [n.node_id for n in self.nodes])
        return {node: sign_assignment(a, keys.signing) for node, a in unsigned.items()}

    def apply(self, plan: Plan, wire_dtype: str = "float32") -> None:
        """Prepare everywhere, then commit everywhere (the test bed's own
        static rollout; the broadcaster does this with abort handling)."""
        envelopes = self.signed_assignments(plan, wire_dtype=wire_dtype)
        for node, env in envelopes.items():
            with self.agent(node, ROLLOUT) as agent:
                agent.Prepare(na.PrepareRequest(assignment=env), timeout=120)
        signing = ensure_dev_keys(Path(self.control_key), "control").signing
        for node, env in envelopes.items():
            with self.agent(node, ROLLOUT) as agent:
                agent.Commit(commit_request(env, signing), timeout=30)
        self.epoch = plan.epoch
        self.save()

    def write_inventory(self, path: Path, flops_per_s: float = 1e9) -> Path:
        """The bed as the control plane's inventory (the schema of
        ``services.monitor.loaders``): every node trusted, with its address and
        its enrolled agreement key. The broadcaster signs only by this."""
        nodes = [{"id": n.node_id, "address": n.address, "trust": "trusted",
                  "flops_per_s": flops_per_s,
                  "agreement_public_key": node_agreement_key(Path(self.base, n.node_id),
                                                             n.node_id)}
                 for n in self.nodes]
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps({"nodes": nodes}, indent=1))
        tmp.replace(path)  # the broadcaster re-reads it: never half a file
        return path

    def even_plan(self, epoch: int | None = None) -> Plan:
        m = self.manifest()
        return even_plan([n.node_id for n in self.nodes], m.num_layers, m.model_digest,
                         epoch if epoch is not None else self.epoch + 1)

    def generate(self, node_id: str, prompt: str = "", token_ids: Sequence[int] = (),
                 **kw: Any) -> list[Any]:
        """``Inference.Generate`` on ``node_id``, called as the bed's client."""
        return generate(self.node(node_id).address, prompt, token_ids,
                        transport=self.transport(CLIENT), **kw)


def shared_host_waves() -> int:
    """Waves a ring of agents whose real compute shares this machine should
    carry: one per core. A step is partly single-threaded Python (each
    layer's dispatch, each row's attention), so two agents on two cores
    overlap well even with two torch threads each (measured: 16 clients gave
    36.6 tokens/s with one wave, 41.6 with two); more waves than cores only
    make the agents wait on each other's cores. (Emulated devices hold their
    steps without computing: a scenario keeps the default.)"""
    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


# Idle torch workers must not spin while another node computes: on a small
# machine that would steal the active node's cores.
QUIET_THREADS = {"OMP_WAIT_POLICY": "PASSIVE"}


def generate(address: str, prompt: str = "", token_ids: Sequence[int] = (),
             max_new_tokens: int = 16, timeout_s: float = 120.0, *, transport: Transport,
             **kw: Any) -> list[Any]:
    """Call Inference.Generate through ``transport`` (a client's: ``Testbed.transport(CLIENT)``)
    and collect the streamed replies."""
    from edgesplit.v1 import inference_pb2, inference_pb2_grpc

    given = {"token_ids": inference_pb2.TokenIds(ids=token_ids)} if token_ids else \
        {"prompt": prompt}
    req = inference_pb2.GenerateRequest(max_new_tokens=max_new_tokens, **given, **kw)
    with transport.sync_channel(address) as ch:  # a grpc.RpcError reaches the caller as is
        return list(inference_pb2_grpc.InferenceStub(ch).Generate(req, timeout=timeout_s))
