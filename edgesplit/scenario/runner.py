"""Run a scenario on the local test bed: every service as a process on
127.0.0.1, emulated heterogeneous nodes and links, a request load (open loop,
or closed-loop clients whose number the scenario changes), and the
scenario's events on schedule. ``mode`` is ``adaptive`` (the orchestrator
adapts), ``static`` (it rolls out the initial plan and never changes it) or
``single-device`` (the entry alone: the whole model on the entry device, the
baseline a split must beat). Every service serves mTLS with its own
certificate from the run's ``pki/`` (``insecure``: plaintext on loopback);
the load calls as a client, the live view as an admin."""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import grpc

from edgesplit.bedpki import ADMIN, CLIENT, PKI_DIR, LocalPki, transport_for
from edgesplit.core.control import Decision, Outcome
from edgesplit.model.profile import profile_json
from edgesplit.procs import start_service
from edgesplit.rpc.convert import seconds
from edgesplit.rpc.convert_orchestrator import decision_from_proto
from edgesplit.rpc.transport import Transport
from edgesplit.scenario.load import ClientPool
from edgesplit.scenario.spec import BASE_FLOPS, MODES, Event, Scenario
from edgesplit.testbed import Testbed, ensure_model, node_agreement_key
from edgesplit.v1 import (
    common_pb2,
    inference_pb2,
    inference_pb2_grpc,
    monitor_pb2,
    monitor_pb2_grpc,
    orchestrator_pb2,
    orchestrator_pb2_grpc,
)


@dataclass
class RequestRecord:
    started: float
    ok: bool
    privacy_high: bool
    ttft_s: float = 0.0
    steps_s: list[float] = field(default_factory=list)
    epochs: set[int] = field(default_factory=set)
    error: str = ""


@dataclass
class Live:
    """What the live view shows."""

    epoch: int = 0
    route: str = ""
    latency_ewma_s: float = 0.0
    decisions: list[str] = field(default_factory=list)
    plans: dict[int, Any] = field(default_factory=dict)  # epoch -> Plan proto
    # Busy time / wall time (the monitor's own_load), mean over the plan's nodes, per poll.
    utilization: list[float] = field(default_factory=list)
    peak_utilization: list[float] = field(default_factory=list)  # polls at the peak load
    started_at: float = 0.0  # unix time of run time 0 (the timeline places decisions by it)


def free_ports(n: int) -> list[int]:
    """``n`` distinct free ports: all held open until all are chosen (closing
    each before asking for the next can hand the same port out twice)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def scenario_model(sc: Scenario) -> Path:
    """The shard directory of the scenario's seeded model (made once, cached)."""
    m = sc.model
    tag = f"{m.get('family', 'qwen3')}-l{m.get('layers', 12)}-h{m.get('hidden', 384)}"
    cache = Path("var/scenario-models")
    return ensure_model(cache / f"model-{tag}", cache / f"shards-{tag}",
                        family=m.get("family", "qwen3"), layers=m.get("layers", 12),
                        hidden=m.get("hidden", 384), heads=m.get("heads", 6),
                        kv_heads=m.get("kv_heads", 2), seed=m.get("seed", 0))


def calibrate(shards: Path, profile: dict[str, Any], steps: int = 16) -> float:
    """FLOP/s this machine achieves decoding the scenario's model, so that the
    declared speed of a node with slowdown k is this / k (what it will measure)."""
    import torch

    from edgesplit.model.runner import TorchSegmentRunner
    from edgesplit.model.shard import ShardDir

    layers = min(4, len(profile["layers"]))
    runner = TorchSegmentRunner(ShardDir(shards), 0, layers, has_embed=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the test bed's agents run it
    try:
        runner.forward("calibrate", runner.embed(list(range(3, 19))), 0)
        start = time.thread_time()
        for i in range(steps):
            runner.forward("calibrate", runner.embed([7]), 16 + i)
        per_layer = (time.thread_time() - start) / steps / layers
    finally:
        torch.set_num_threads(threads)
    flops = sum(c["flops_per_token"] for c in profile["layers"][:layers]) / layers
    return float(flops / per_layer) if per_layer > 0 else BASE_FLOPS


def inventory(sc: Scenario, addresses: dict[str, str], base_flops: float = BASE_FLOPS
              ) -> dict[str, Any]:
    """The cluster as the monitor and planner know it: trust, memory, speed."""
    trusted = [n.id for n in sc.nodes if n.trusted]
    return {"nodes": [{"id": n.id, "trust": n.trust, "memory": f"{n.memory_gb}GiB",
                       "flops_per_s": base_flops / n.slowdown, "address": addresses[n.id],
                       "trusted_by": [sc.entry.id] if n.trusted else []}
                      for n in sc.nodes],
            "trusted_nodes": trusted}


def single_device(sc: Scenario) -> Scenario:
    """The scenario with only its entry: the events on other nodes and links go."""
    entry = sc.entry.id

    def applies(ev: Event) -> bool:
        if ev.kind == "link":
            return False
        return ev.kind not in ("node", "kill", "restart") or ev.args["node"] == entry

    return replace(sc, nodes=(sc.entry,), links=(),
                   events=tuple(e for e in sc.events if applies(e)))


class Run:
    def __init__(self, sc: Scenario, mode: str, duration_s: float, base: Path,
                 show: Callable[..., None], orchestrator_args: list[str] | None = None,
                 insecure: bool = False, agent_args: list[str] | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        self.scenario = sc  # as written; ``sc`` is what this mode runs
        sc = single_device(sc) if mode == "single-device" else sc
        self.sc, self.mode, self.duration_s, self.base, self.show = sc, mode, duration_s, base, show
        self.rate = sc.load.requests_per_s  # open loop; ``load`` events change it
        self.clients: ClientPool | None = None  # closed loop
        self.insecure = insecure
        self.pki = None if insecure else LocalPki(base / PKI_DIR)
        self.orchestrator_args = orchestrator_args or []
        self.agent_args = agent_args or []  # after the defaults: a flag given here wins
        self.records: list[RequestRecord] = []
        self.live = Live()
        self.services: list[Any] = []
        self.bed: Testbed | None = None
        self.t0 = 0.0
        self.privacy_burst = 0

    # ---- set-up ------------------------------------------------------------------
    def start(self) -> None:
        sc, base = self.sc, self.base
        shards = scenario_model(sc)
        profile = profile_json(str(shards))
        (base / "profile.json").write_text(json.dumps(profile))
        ids = [n.id for n in sc.nodes]
        listen = {i: f"127.0.0.1:{p}" for i, p in zip(ids, free_ports(len(ids)), strict=True)}
        self.base_flops = calibrate(shards, profile)
        self.show(f"[{self.mode}] this machine decodes the model at "
                  f"{self.base_flops / 1e9:.2f} GFLOP/s (a slowdown-1 node)")
        inv = inventory(sc, listen, self.base_flops)
        for entry in inv["nodes"]:  # enrol each agent's key before it first starts
            entry["agreement_public_key"] = node_agreement_key(base / "bed" / entry["id"],
                                                               entry["id"])
        (base / "inventory.json").write_text(json.dumps(inv))
        from edgesplit.security.keys import ensure_dev_keys

        ensure_dev_keys(base / "bed" / "keys", "control")  # the agents trust this signer
        self.show(f"[{self.mode}] starting monitor, split reviser, broadcaster ...")
        tls = {"pki": self.pki, "insecure": self.insecure}
        monitor = start_service("monitor", base, ["--inventory", str(base / "inventory.json"),
                                                  "--profile", str(base / "profile.json"),
                                                  "--report-interval-s", "0.5",
                                                  # links change within seconds here: weigh
                                                  # new samples more than the default 0.3
                                                  "--link-alpha", "0.6",
                                                  "--sla-step-budget-s", str(sc.sla_step_s)],
                                **tls)
        reviser = start_service("split_reviser", base, **tls)
        broadcaster = start_service("broadcaster", base, [
            "--state-dir", str(base / "broadcaster"), "--shard-dir", str(shards),
            "--signing-key", str(base / "bed" / "keys" / "control.ed25519.pem"),
            "--inventory", str(base / "inventory.json")], **tls)
        orchestrator = start_service("orchestrator", base, [
            "--monitor", monitor.address, "--split-reviser", reviser.address,
            "--broadcaster", broadcaster.address, "--db", str(base / "orchestrator.sqlite"),
            "--entries", sc.entry.id, "--interval-s", "0.5", "--cooldown-s", "10",
            "--prompt-tokens", str(sc.load.prompt_tokens),
            "--new-tokens", str(sc.load.new_tokens),
            "--requests-per-s", str(sc.load.requests_per_s or sc.load.concurrency / 5.0),
            "--static" if self.mode != "adaptive" else "--no-static",
            *(arg for k, v in sc.orchestrator.items()
              for arg in ("--" + k.replace("_", "-"), str(v))),
            *self.orchestrator_args], **tls)
        self.services = [monitor, reviser, broadcaster, orchestrator]
        self.addr = {s.name: s.address for s in self.services}
        self.show(f"[{self.mode}] starting {len(ids)} node agents ...")
        # One torch thread per agent: several agents share this machine's cores,
        # and the emulated slow-down scales each step's CPU time.
        self.bed = Testbed.up(len(ids), shards, base / "bed", node_ids=ids, listen=listen,
                              torch_threads=1, **tls,
                              extra_args=["--monitor", monitor.address,
                                          "--orchestrator", orchestrator.address,
                                          "--report-interval-s", "0.5",
                                          "--bandwidth-probe-cycles", "2",
                                          "--step-timeout-s", "8", "--rpc-timeout-s", "5",
                                          "--sla-step-s", str(sc.sla_step_s),
                                          *(["--serial-device"] if sc.serial_device else []),
                                          *self.agent_args])
        self._start_gateway(shards, monitor.address, listen[sc.entry.id])
        for n in sc.nodes:
            self._conditions(n.id, compute_slowdown=n.slowdown,
                             background_utilization=n.background_utilization)
        for a in ids:
            for b in ids:
                if a != b:
                    link = sc.link(a, b)
                    self._link(a, b, link.delay_ms, link.bandwidth_mbps)

    def _start_gateway(self, shards: Path, monitor: str, entry: str) -> None:
        """The OpenAI gateway in front of the scenario's entry (the load itself
        goes to the entry directly, so both modes measure the same path)."""
        from services.gateway.launch import start_gateway

        gateway = start_gateway(self.base, shards, monitor=monitor,
                                entries={self.sc.entry.id: entry},
                                extra_args=("--model-name", self.sc.name),
                                pki=self.pki, insecure=self.insecure)
        self.services.append(gateway)
        self.addr["gateway"] = gateway.address
        self.show(f"[{self.mode}] OpenAI gateway: http://{gateway.address}/v1 "
                  f"(model {self.sc.name!r})")

    def _conditions(self, node: str, **fields: Any) -> None:
        assert self.bed is not None
        self.bed.set_conditions(node, **fields)

    def _link(self, a: str, b: str, delay_ms: float | None, mbps: float | None) -> None:
        for src, dst in ((a, b), (b, a)):
            kw: dict[str, Any] = {}
            if delay_ms is not None:
                kw["link_delay_s"] = {dst: delay_ms / 1000.0}
            if mbps is not None:
                kw["link_bandwidth_bps"] = {dst: mbps * 1e6}
            self._conditions(src, **kw)

    def stop(self) -> None:
        if self.bed is not None:
            self.bed.down()
        for s in reversed(self.services):
            s.stop()

    # ---- the run -------------------------------------------------------------------
    def transport(self, as_client: bool = False) -> Transport:
        """The run's own calls: the load as a client, everything else as an admin."""
        return transport_for(self.pki, CLIENT if as_client else ADMIN)

    async def wait_for_plan(self) -> None:
        """Until the orchestrator's initial plan is committed and the entry has it."""
        orch = orchestrator_pb2_grpc.OrchestratorStub(self.transport().aio_channel(self.addr["orchestrator"]))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # the initial plan is the orchestrator's
            st = await orch.Status(orchestrator_pb2.StatusRequest(), timeout=5)
            if st.plan.epoch:
                break
            await asyncio.sleep(0.2)
        else:
            raise RuntimeError("orchestrator rolled out no initial plan in 120 s")
        await asyncio.sleep(1.0)  # let the entry see the commit

    async def run(self) -> None:
        await self.wait_for_plan()
        orch = orchestrator_pb2_grpc.OrchestratorStub(self.transport().aio_channel(self.addr["orchestrator"]))
        self.t0 = time.monotonic()
        self.live.started_at = time.time()
        stop = asyncio.Event()
        if self.sc.load.requests_per_s > 0:
            tasks = [asyncio.create_task(self._arrivals(stop))]
        else:
            self.clients = ClientPool(self._one, self.sc.load.think_s, stop)
            self.clients.resize(self.sc.load.concurrency)
            tasks = []
        tasks.append(asyncio.create_task(self._events(stop)))
        tasks.append(asyncio.create_task(self._watch(orch, stop)))
        await asyncio.sleep(self.duration_s)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.clients is not None:
            await self.clients.join()
        await self._dump_state()
        write_records(self.base / "requests.json", self.records)

    async def _dump_state(self) -> None:
        """E(t) at the end, beside the logs: what the planner last saw."""
        from google.protobuf.json_format import MessageToJson

        mon = monitor_pb2_grpc.MonitorStub(self.transport().aio_channel(self.addr["monitor"]))
        try:
            env = (await mon.GetState(monitor_pb2.GetStateRequest(), timeout=5)).state
        except grpc.aio.AioRpcError:
            return
        (self.base / "final_state.json").write_text(MessageToJson(env))

    def _now(self) -> float:
        return time.monotonic() - self.t0

    def _stub(self) -> inference_pb2_grpc.InferenceStub:
        assert self.bed is not None
        if not hasattr(self, "_inference"):
            self._inference = inference_pb2_grpc.InferenceStub(
                self.transport(as_client=True).aio_channel(
                    self.bed.node(self.sc.entry.id).address))
        return self._inference

    async def _one(self, rng: random.Random) -> None:
        """One request; its record counts whether it succeeds or not."""
        ld = self.sc.load
        high = rng.random() < ld.privacy_high_fraction
        if self.privacy_burst > 0:
            self.privacy_burst -= 1
            high = True
        ids = [rng.randrange(3, 500) for _ in range(ld.prompt_tokens)]
        req = inference_pb2.GenerateRequest(
            token_ids=inference_pb2.TokenIds(ids=ids), max_new_tokens=ld.new_tokens,
            privacy=common_pb2.PRIVACY_HIGH if high else common_pb2.PRIVACY_LOW)
        rec = RequestRecord(self._now(), False, high)
        try:
            async for r in self._stub().Generate(req, timeout=120):
                (rec.steps_s.append(seconds(r.step_latency)) if r.index else
                 setattr(rec, "ttft_s", seconds(r.step_latency)))
                rec.epochs.add(r.epoch)
            rec.ok = True
        except grpc.aio.AioRpcError as exc:
            rec.error = f"{exc.code().name}: {exc.details()}"[:200]
        self.records.append(rec)

    async def _arrivals(self, stop: asyncio.Event) -> None:
        """Open loop: the same seeded arrival times in every mode."""
        ld = self.sc.load
        rng, arrivals = random.Random(0), random.Random(1)
        in_flight: set[asyncio.Task[None]] = set()
        next_at = 0.0
        while not stop.is_set():
            next_at += arrivals.expovariate(self.rate) if self.rate > 0 else 1.0
            try:
                await asyncio.wait_for(stop.wait(), max(0.0, next_at - self._now()))
                break
            except TimeoutError:
                pass
            if self.rate <= 0:
                continue
            if len(in_flight) >= ld.max_in_flight:
                self.records.append(RequestRecord(self._now(), False, False,
                                                  error="OVERLOADED: too many in flight"))
                continue
            task = asyncio.create_task(self._one(rng))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        if in_flight:  # requests that arrived in time finish (or fail) and count
            await asyncio.wait(in_flight, timeout=120)

    async def _events(self, stop: asyncio.Event) -> None:
        for ev in self.sc.events:
            wait = ev.at - self._now()
            if wait > 0:
                try:
                    await asyncio.wait_for(stop.wait(), wait)
                    return
                except TimeoutError:
                    pass
            self.show(f"  t={self._now():5.1f}s  EVENT {ev.describe()}")
            if ev.kind == "load":  # on the loop: the clients are its tasks
                self._load(ev.args)
                continue
            await asyncio.get_running_loop().run_in_executor(None, self._apply, ev)

    def _load(self, args: dict[str, Any]) -> None:
        if "concurrency" in args and self.clients is not None:
            self.clients.resize(int(args["concurrency"]))
        if "requests_per_s" in args:
            self.rate = float(args["requests_per_s"])

    def _apply(self, ev: Event) -> None:
        assert self.bed is not None
        a = ev.args
        if ev.kind == "link":
            self._link(a["a"], a["b"], a.get("delay_ms"), a.get("bandwidth_mbps"))
        elif ev.kind == "node":
            self._conditions(a["node"], compute_slowdown=a.get("slowdown", 0) or 0,
                             background_utilization=a.get("background_utilization", 0) or 0)
        elif ev.kind == "kill":
            self.bed.kill(a["node"])
        elif ev.kind == "restart":
            self.bed.restart(a["node"])
        elif ev.kind == "privacy_burst":
            self.privacy_burst += int(a.get("count", 1))

    async def _watch(self, orch: Any, stop: asyncio.Event) -> None:
        mon = monitor_pb2_grpc.MonitorStub(self.transport().aio_channel(self.addr["monitor"]))
        seen_decision = 0
        polls = 0
        while not stop.is_set():
            try:
                st = await orch.Status(orchestrator_pb2.StatusRequest(), timeout=5)
                env = (await mon.GetState(monitor_pb2.GetStateRequest(), timeout=5)).state
            except grpc.aio.AioRpcError:
                await asyncio.sleep(1)
                continue
            self.live.plans.setdefault(st.plan.epoch, st.plan)
            self.live.epoch = st.plan.epoch
            self.live.route = " ".join(
                f"{s.node_id}[{s.start},{s.end})" for s in st.plan.routes[0].segments
            ) if st.plan.routes else ""
            self.live.latency_ewma_s = seconds(env.latency_ewma)
            used = {s.node_id for r in st.plan.routes for s in r.segments}
            utils = [v.own_load for v in env.nodes if v.state.node_id in used]
            if utils:
                self.live.utilization.append(sum(utils) / len(utils))
                pool = self.clients
                if pool is not None and pool.peak > self.sc.load.concurrency \
                        and pool.target == pool.peak:
                    self.live.peak_utilization.append(sum(utils) / len(utils))
            if st.last_decision.id and st.last_decision.id != seen_decision:
                d = decision_from_proto(st.last_decision)
                seen_decision = d.id
                self.show(f"  t={self._now():5.1f}s  DECISION triggers={','.join(d.triggers) or '-'}"
                          f" action={d.change.value} outcome={d.outcome.value} epoch "
                          f"{d.old_epoch}->{d.new_epoch}"
                          + (f" in {d.trigger_to_commit_s * 1000:.0f} ms"
                             if d.outcome is Outcome.COMMITTED else ""))
            done = [r for r in self.records if r.ok]
            hit = sum(1 for r in done if _met(r, self.sc.sla_step_s))
            polls += 1
            if sys.stderr.isatty() or polls % 5 == 1:  # a log gets a line every 5 s
                self.show(f"  t={self._now():5.1f}s  epoch {self.live.epoch}  "
                          f"{self.live.route}  latency EWMA {self.live.latency_ewma_s * 1000:6.1f} ms"
                          f"  SLA {hit}/{len(self.records)}", transient=True)
            await asyncio.sleep(1.0)

    # ---- results ---------------------------------------------------------------------
    async def history(self) -> list[Decision]:
        orch = orchestrator_pb2_grpc.OrchestratorStub(
            self.transport().aio_channel(self.addr["orchestrator"]))
        reply = await orch.History(orchestrator_pb2.HistoryRequest(limit=1000), timeout=10)
        return [decision_from_proto(d) for d in reply.decisions]


def _met(r: RequestRecord, budget: float) -> bool:
    """A request meets the SLA when it completes and its decode steps average
    within the per-step budget (its time to first token is reported apart)."""
    return r.ok and (not r.steps_s or sum(r.steps_s) / len(r.steps_s) <= budget)


def run_mode(sc: Scenario, mode: str, duration_s: float, show: Callable[..., None],
             insecure: bool = False) -> tuple[list[RequestRecord], list[Any], Live]:
    base = Path(tempfile.mkdtemp(prefix=f"edgesplit-{sc.name}-{mode}-"))
    run = Run(sc, mode, duration_s, base, show, insecure=insecure)
    try:
        run.start()
        asyncio.run(run.run())
        history = asyncio.run(run.history())
    finally:
        run.stop()
    return run.records, history, run.live


def write_records(path: Path, records: list[RequestRecord]) -> None:
    """Every request of the run (start in seconds from the run's), to see
    which ones missed the SLA and when."""
    path.write_text(json.dumps([
        {"started_s": round(r.started, 3), "ok": r.ok, "privacy_high": r.privacy_high,
         "ttft_ms": round(r.ttft_s * 1000, 1),
         "mean_step_ms": round(1000 * sum(r.steps_s) / len(r.steps_s), 1) if r.steps_s else None,
         "max_step_ms": round(1000 * max(r.steps_s), 1) if r.steps_s else None,
         "epochs": sorted(r.epochs), "error": r.error} for r in records], indent=1))


def default_show(msg: str, transient: bool = False) -> None:
    if transient and sys.stderr.isatty():
        sys.stderr.write("\r\033[K" + msg[:os.get_terminal_size().columns - 1])
    else:
        sys.stderr.write(("\r\033[K" if sys.stderr.isatty() else "") + msg + "\n")
    sys.stderr.flush()
