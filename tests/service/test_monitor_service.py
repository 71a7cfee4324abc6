"""The monitor service in-process on 127.0.0.1 port 0: reports in, E(t) out,
enrolment and mTLS identity, WatchState, the agent's reporter across a monitor
restart, link probes through emulated links, and ``edgesplit status --json``."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from prometheus_client import REGISTRY

from edgesplit.cli import main as cli_main
from edgesplit.core.inventory import NodeInventory
from edgesplit.core.monitor import MonitorConfig as ReducerConfig
from edgesplit.rpc.convert import duration, timestamp
from edgesplit.rpc.server import create_server
from edgesplit.rpc.transport import LOOPBACK_PLAINTEXT, Transport, TransportSettings
from edgesplit.security.pki import init_pki
from edgesplit.v1 import common_pb2
from edgesplit.v1 import monitor_pb2 as mpb
from edgesplit.v1 import monitor_pb2_grpc as mpb_grpc
from services.monitor.__main__ import build_hub, registrations
from services.monitor.config import MonitorConfig
from services.monitor.hub import MonitorHub
from services.node_agent.emulation import Emulator
from services.node_agent.links import LinkStats
from services.node_agent.reporter import Prober, Reporter, ReporterSettings
from services.node_agent.resources import ResourceSampler
from services.node_agent.telemetry import Telemetry

INVENTORY = """
nodes:
  - {id: node-0, trust: trusted, memory: 16GiB, flops_per_s: 2.0e12, address: "127.0.0.1:1"}
  - {id: node-1, trust: untrusted, memory_bytes: 8000000000, speed: 1.0e12, trusted_by: [node-0]}
"""


def refused_metric(reason: str) -> float:
    return REGISTRY.get_sample_value("edgesplit_monitor_reports_refused_total",
                                     {"reason": reason}) or 0.0


def report(node: str, seq: int, **kw: Any) -> mpb.ReportRequest:
    base: dict[str, Any] = {"node_id": node, "seq": seq, "sent_at": timestamp(time.time()),
                            "cpu_utilization": 0.25, "memory_used_bytes": 2 << 30,
                            "memory_total_bytes": 16 << 30}
    return mpb.ReportRequest(**{**base, **kw})


@asynccontextmanager
async def monitor(tmp: Path, **overrides: Any) -> AsyncIterator[tuple[str, MonitorHub]]:
    inv = tmp / "inventory.yaml"
    inv.write_text(INVENTORY)
    config = MonitorConfig(**{"inventory": str(inv), "report_interval_s": 0.1,
                              "insecure": "tls_cert" not in overrides, **overrides})
    hub = build_hub(config)
    server = await create_server(config, registrations(config, hub))
    await server.set_serving(True)
    task = asyncio.create_task(hub.run())
    try:
        yield f"127.0.0.1:{server.port}", hub
    finally:
        hub.close()  # ends the streams ``send`` left open, as a monitor's shutdown does
        for ch in _OPEN:
            await ch.close()
        _OPEN.clear()
        task.cancel()
        await server.server.stop(0)


PLAIN = Transport(LOOPBACK_PLAINTEXT)  # the tests' own client side without TLS


_OPEN: list[Any] = []  # channels of the streams ``send`` keeps open, closed with the monitor


async def send(address: str, *reports: mpb.ReportRequest,
               transport: Transport = PLAIN) -> list[mpb.ReportResponse]:
    """One stream, one ack per report, left open as an agent keeps it (a stream
    that ends marks its node lost: test_a_node_whose_stream_ends_any_way...)
    until the ``monitor`` context stops the monitor."""
    ch = transport.aio_channel(address)
    _OPEN.append(ch)
    call = mpb_grpc.MonitorStub(ch).Report(timeout=30)
    acks = []
    for r in reports:
        await call.write(r)
        acks.append(await call.read())
    return acks


async def get_state(address: str) -> mpb.EnvironmentState:
    async with PLAIN.aio_channel(address) as ch:
        return (await mpb_grpc.MonitorStub(ch).GetState(mpb.GetStateRequest(), timeout=5)).state


async def test_reports_fold_into_state_and_watch_streams(tmp_path: Path) -> None:
    profile = {"name": "m", "digest": "d", "activation_bytes_per_token": 256,
               "embed": {"weight_bytes": 10, "flops_per_token": 1.0},
               "head": {"weight_bytes": 10, "flops_per_token": 1.0},
               "layers": [{"weight_bytes": 10, "flops_per_token": 5.0, "kv_bytes_per_token": 4}]}
    (tmp_path / "profile.json").write_text(json.dumps(profile))
    async with monitor(tmp_path, profile=str(tmp_path / "profile.json")) as (address, _):
        layers = [mpb.LayerTiming(layer=common_pb2.LayerRef(index=0), prefill_s_per_token=0.001,
                                  decode_s_per_token=0.004),
                  mpb.LayerTiming(layer=common_pb2.LayerRef(part=common_pb2.PART_HEAD),
                                  decode_s_per_token=0.002)]
        link = mpb.LinkObservation(peer="node-1", rtt=duration(0.05), bandwidth_bps=8e6,
                                   source=mpb.LINK_SOURCE_PROBE)
        acks = await send(address, report("node-0", 0, layers=layers, links=[link],
                                          committed_epoch=3, incarnation=1),
                          report("node-0", 0, incarnation=1))  # a retry: stale, not refused
        assert [a.accepted for a in acks] == [True, True]
        assert acks[1].reason == mpb.REPORT_REASON_STALE
        state = await get_state(address)
        views = {v.state.node_id: v for v in state.nodes}
        assert list(views) == ["node-0", "node-1"]  # inventory order
        n0 = views["node-0"]
        assert n0.state.alive and n0.reports == 1 and n0.committed_epoch == 3
        assert n0.cpu_utilization == pytest.approx(0.25) and not n0.has_gpu
        assert [(t.layer, t.decode_s_per_token) for t in n0.layers] == [
            (common_pb2.LayerRef(index=0), pytest.approx(0.004)),
            (common_pb2.LayerRef(part=common_pb2.PART_HEAD), pytest.approx(0.002))]
        # The planner view: the measured head time reaches it too.
        assert [(t.layer, t.seconds) for t in n0.state.layer_seconds] == [
            (common_pb2.LayerRef(index=0), pytest.approx(0.004)),
            (common_pb2.LayerRef(part=common_pb2.PART_HEAD), pytest.approx(0.002))]
        assert views["node-1"].reports == 0 and views["node-1"].state.alive  # grace period
        assert [(lk.src, lk.dst, lk.rtt_s, lk.bandwidth_bps) for lk in state.links] == [
            ("node-0", "node-1", pytest.approx(0.05), pytest.approx(8e6))]
        assert state.link_views[0].source == mpb.LINK_SOURCE_PROBE
        # One node's 4 ms does not recalibrate the layer for every node (it may be
        # slower than it declares): the served profile keeps the 5 FLOP/token
        # estimate, while node-0's own measured time is in its layer_seconds.
        assert state.profile.layers[0].flops_per_token == pytest.approx(5.0)
        async with PLAIN.aio_channel(address) as ch:
            watch = mpb_grpc.MonitorStub(ch).WatchState(mpb.WatchStateRequest(), timeout=5)
            versions = []
            async for st in watch:
                versions.append(st.state.version)
                if len(versions) == 3:
                    break
            watch.cancel()
        assert versions == sorted(set(versions))


async def test_unenrolled_report_is_refused_and_counted(tmp_path: Path) -> None:
    before = refused_metric("not_enrolled")
    async with monitor(tmp_path) as (address, _):
        (ack,) = await send(address, report("intruder", 0))
        assert not ack.accepted and ack.reason == mpb.REPORT_REASON_NOT_ENROLLED
        state = await get_state(address)
        assert state.reports_refused["not_enrolled"] == 1
        assert "intruder" not in {v.state.node_id for v in state.nodes}
    assert refused_metric("not_enrolled") == before + 1


async def test_open_enrolment_admits_unknown_nodes(tmp_path: Path) -> None:
    async with monitor(tmp_path, enroll_open=True) as (address, _):
        (ack,) = await send(address, report("dev-9", 0))
        assert ack.accepted
        views = {v.state.node_id: v for v in (await get_state(address)).nodes}
        dev = views["dev-9"].state
        assert dev.trust == common_pb2.TRUST_UNTRUSTED and dev.memory_bytes == 16 << 30


async def test_open_enrolment_is_off_by_default_and_bounded_when_on(tmp_path: Path) -> None:
    assert MonitorConfig().enroll_open is False
    before = refused_metric("enrolment_full")
    async with monitor(tmp_path, enroll_open=True, max_open_enrolments=3) as (address, hub):
        acks = [a for i in range(10) for a in await send(address, report(f"fake-{i}", 0))]
        assert [a.accepted for a in acks] == [True] * 3 + [False] * 7
        assert {a.reason for a in acks[3:]} == {mpb.REPORT_REASON_ENROLMENT_FULL}
        state = await get_state(address)
        ids = {v.state.node_id for v in state.nodes}
        assert ids == {"node-0", "node-1", "fake-0", "fake-1", "fake-2"}
        assert state.reports_refused["enrolment_full"] == 7
        (known,) = await send(address, report("fake-1", 1))  # enrolled ones still report
        assert known.accepted and hub.open_enrolled == 3
    assert refused_metric("enrolment_full") == before + 7
    assert REGISTRY.get_sample_value("edgesplit_monitor_open_enrolments") == 3


async def test_mtls_certificate_naming_another_node_is_refused(tmp_path: Path) -> None:
    init_pki(tmp_path / "pki", nodes=["node-0", "node-1"], admins=["ops"])
    svc, n1_dir = tmp_path / "pki" / "services" / "monitor", tmp_path / "pki" / "nodes" / "node-1"
    before = refused_metric("identity_mismatch")
    async with monitor(tmp_path, tls_cert=str(svc / "tls.pem"), tls_key=str(svc / "tls.key"),
                       tls_ca=str(svc / "ca.pem")) as (address, _):
        n1 = Transport(TransportSettings(str(n1_dir / "ca.pem"), str(n1_dir / "tls.pem"),
                                         str(n1_dir / "tls.key")))
        (spoof,) = await send(address, report("node-0", 0), transport=n1)
        assert not spoof.accepted and spoof.reason == mpb.REPORT_REASON_IDENTITY_MISMATCH
        (own,) = await send(address, report("node-1", 0), transport=n1)
        assert own.accepted
        # An admin's certificate is authenticated but may not report at all.
        ops = tmp_path / "pki" / "admins" / "ops"
        admin = Transport(TransportSettings(str(ops / "ca.pem"), str(ops / "tls.pem"),
                                            str(ops / "tls.key")))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await send(address, report("node-1", 1), transport=admin)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert refused_metric("identity_mismatch") == before + 1


async def test_one_stream_speaks_for_one_node(tmp_path: Path) -> None:
    async with monitor(tmp_path) as (address, _):
        acks = await send(address, report("node-0", 0), report("node-1", 0))
        assert [a.accepted for a in acks] == [True, False]
        assert acks[1].reason == mpb.REPORT_REASON_IDENTITY_MISMATCH


def test_dead_after_missed_cycles_and_alive_again() -> None:
    clock = SimpleNamespace(t=100.0)
    hub = MonitorHub(ReducerConfig(report_interval_s=1.0, missed_cycles=3), NodeInventory(()),
                     enroll_open=True, clock=lambda: clock.t)
    assert hub.ingest(report("a", 0)).accepted
    clock.t += 3.0
    assert hub.state().nodes[0].state.alive  # exactly three cycles: still within grace
    clock.t += 0.01
    assert not hub.state().nodes[0].state.alive
    assert hub.ingest(report("a", 1)).accepted
    assert hub.state().nodes[0].state.alive


async def test_a_node_whose_stream_breaks_is_dead_after_one_cycle(tmp_path: Path) -> None:
    """A node's report stream cancelled (its process killed): dead after one
    0.1 s report cycle, long before the 20 missed cycles silence alone needs;
    a node whose stream is merely renewed stays alive throughout."""
    async with monitor(tmp_path, missed_cycles=20) as (address, _), \
            PLAIN.aio_channel(address) as ch:
        stub = mpb_grpc.MonitorStub(ch)
        calls = {n: stub.Report(timeout=10) for n in ("node-0", "node-1")}
        for n, call in calls.items():
            await call.write(report(n, 0))
            assert (await call.read()).accepted

        def alive() -> dict[str, bool]:
            return {v.state.node_id: v.state.alive for v in hub_state}

        calls["node-0"].cancel()
        await calls["node-1"].done_writing()  # node-1 renews its stream at once
        renewed = stub.Report(timeout=10)
        await renewed.write(report("node-1", 1))
        assert (await renewed.read()).accepted
        lost_at = time.monotonic()
        while True:
            hub_state = (await get_state(address)).nodes
            if not alive()["node-0"]:
                break
            assert time.monotonic() - lost_at < 1.0, "node-0 still alive 1 s after its stream broke"
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)
        hub_state = (await get_state(address)).nodes
        assert alive() == {"node-0": False, "node-1": True}
        renewed.cancel()


KILLED_REPORTER = """
import os, signal, sys, time
from edgesplit.rpc.transport import LOOPBACK_PLAINTEXT, Transport
from edgesplit.v1 import monitor_pb2 as mpb, monitor_pb2_grpc as mpb_grpc
with Transport(LOOPBACK_PLAINTEXT).sync_channel(sys.argv[1]) as ch:
    def reports():
        yield mpb.ReportRequest(node_id="node-0", seq=1, memory_total_bytes=16 << 30)
        time.sleep(60)  # the stream stays open, as an agent's does
    acks = mpb_grpc.MonitorStub(ch).Report(reports(), timeout=30)
    next(acks)
    print("reported", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # mid-stream, as a crash would
"""


async def test_a_node_whose_stream_ends_any_way_is_dead_after_one_cycle(tmp_path: Path) -> None:
    """The reporting process itself dies (SIGKILL: its connection torn down by
    the kernel, which gRPC often reads as a clean end of the stream before it
    cancels the call), or a stream ends cleanly and no other follows: dead
    after one 0.1 s cycle either way, long before 20 silent cycles."""

    async def dead_within(node: str, since: float, limit_s: float = 1.0) -> None:
        while {v.state.node_id: v.state.alive for v in (await get_state(address)).nodes}[node]:
            assert time.monotonic() - since < limit_s, f"{node} alive {limit_s} s after its end"
            await asyncio.sleep(0.02)

    async with monitor(tmp_path, missed_cycles=20) as (address, _):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", KILLED_REPORTER, address, stdout=asyncio.subprocess.PIPE)
        assert proc.stdout is not None
        assert (await asyncio.wait_for(proc.stdout.readline(), 30)).strip() == b"reported"
        await proc.wait()
        await dead_within("node-0", time.monotonic())
        async with PLAIN.aio_channel(address) as ch:  # accepted, then the stream half-closes
            call = mpb_grpc.MonitorStub(ch).Report(timeout=10)
            await call.write(report("node-1", 0))
            assert (await call.read()).accepted
            await call.done_writing()
            await call.code()
        await dead_within("node-1", time.monotonic())


def fake_agent() -> SimpleNamespace:
    book = SimpleNamespace(committed=None, all_runners=list)
    return SimpleNamespace(control=SimpleNamespace(book=book),
                           compute=SimpleNamespace(queue_depth=0), emulator=Emulator(),
                           queue=None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_for(cond: Any, timeout: float, step: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(step)


async def test_reporter_survives_monitor_restart(tmp_path: Path) -> None:
    port = free_port()
    settings = ReporterSettings(node_id="node-0", monitor=f"127.0.0.1:{port}", interval_s=0.1,
                                rpc_timeout_s=2.0, probe_bytes=0, backoff_cap_s=0.5)
    reporter = Reporter(settings, fake_agent(), Telemetry(), ResourceSampler("cpu"),
                        incarnation=7, transport=PLAIN)
    task = asyncio.create_task(reporter.run())
    try:
        for _ in range(2):  # the same agent, two monitor lifetimes on one address
            async with monitor(tmp_path, listen=f"127.0.0.1:{port}") as (_, hub):
                await wait_for(lambda h=hub: h.state().reports_accepted >= 2, 10)
                node = hub.state().nodes[0]
                assert node.state.alive and node.memory_total_bytes > 0
    finally:
        task.cancel()
    assert reporter._seq >= 4


async def test_probes_see_emulated_delay_and_bandwidth(tmp_path: Path) -> None:
    """Node-0 probes node-1 through its emulated link, as its frames would go."""
    from services.node_agent.__main__ import build
    from services.node_agent.config import NodeAgentConfig

    servers, dps = [], []
    for node in ("node-0", "node-1"):
        config = NodeAgentConfig(node_id=node, insecure=True, state_dir=str(tmp_path / node),
                                 testbed_admin=True)
        regs, dp = build(config, make_runner=lambda seg, digests: None)
        server = await create_server(config, regs)
        servers.append(server)
        dps.append(dp)
    try:
        dps[0].emulator.conditions.link_delay_s["node-1"] = 0.05
        dps[0].emulator.conditions.link_bandwidth_bps["node-1"] = 8e6
        links = LinkStats()
        settings = ReporterSettings(node_id="node-0", monitor="", interval_s=0.1)
        clock = SimpleNamespace(t=0.0)  # staleness by a fake clock, timing by the real one
        prober = Prober(settings, dps[0], links, clock=lambda: clock.t)
        prober.peers = lambda: {"node-1": f"127.0.0.1:{servers[1].port}"}  # type: ignore
        await prober.probe_once()  # first: a bandwidth probe pair (no figure yet)
        (obs,) = links.take()
        assert obs.source.value == "probe"
        assert obs.rtt_s == pytest.approx(0.05, rel=0.15)
        assert obs.bandwidth_bps == pytest.approx(8e6, rel=0.15)
        await prober.probe_once()  # nothing is stale yet: no probe at all
        assert links.take() == ()
        clock.t += settings.interval_s
        await prober.probe_once()  # the RTT went stale, the bandwidth did not: RTT probe only
        (obs,) = links.take()
        assert obs.bandwidth_bps is None and obs.rtt_s == pytest.approx(0.05, rel=0.15)
    finally:
        for dp in dps:
            await dp.close()
        for s in servers:
            await s.server.stop(0)


async def test_status_cli_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async with monitor(tmp_path) as (address, _):
        await send(address, report("node-0", 0, queue_depth=2))
        code = await asyncio.to_thread(cli_main, ["status", "--monitor", address, "--json"])
        assert code == 0
        data = json.loads(capsys.readouterr().out)["monitor"]
        nodes = {n["node"]: n for n in data["nodes"]}
        assert nodes["node-0"]["alive"] and nodes["node-0"]["cpu_utilization"] == 0.25
        assert nodes["node-1"]["last_seen_age_s"] is None  # never reported
        assert data["reports"]["accepted"] == 1
        code = await asyncio.to_thread(cli_main, ["status", "--monitor", address])
        table = capsys.readouterr().out
        assert code == 0 and "node-0" in table and "ALIVE" in table


async def test_close_ends_open_streams_at_once(tmp_path: Path) -> None:
    """A stopping monitor ends agents' and watchers' streams instead of waiting out
    its grace period for them; the agents then reconnect to its successor."""
    async with monitor(tmp_path) as (address, hub), PLAIN.aio_channel(address) as ch:
        stub = mpb_grpc.MonitorStub(ch)
        call = stub.Report(timeout=10)
        await call.write(report("node-0", 0))
        assert (await call.read()).accepted
        watch = stub.WatchState(mpb.WatchStateRequest(), timeout=10)
        assert (await watch.read()).state.version
        hub.close()
        assert await asyncio.wait_for(call.read(), 2) is grpc.aio.EOF
        while (await asyncio.wait_for(watch.read(), 2)) is not grpc.aio.EOF:
            pass
        assert await call.code() == grpc.StatusCode.OK
