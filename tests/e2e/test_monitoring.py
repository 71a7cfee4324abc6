"""Capacity profiling on the local test bed: a monitor process and three node
agents that report to it every quarter second while they serve a tiny model.

Conditions are set through the test bed's admin RPC, the same way a scenario
does, and read back from the monitor's ``GetState``: what the agents measure
on their serving path and by their probes must match what was emulated.
One test bed serves the module; the test that kills a node runs last.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgesplit import testbed as tb
from edgesplit.bedpki import PKI_DIR, LocalPki
from edgesplit.cli import main as cli_main
from edgesplit.testbed import ensure_model
from edgesplit.v1 import monitor_pb2 as mpb
from edgesplit.v1 import monitor_pb2_grpc as mpb_grpc
from tests.conftest import ServiceProcess, start_service

INTERVAL = 0.25  # report cycle of agents and monitor
PROMPT = [5, 17, 42, 99, 7, 3, 11, 8]
TOL = 0.15  # what "reported within 15%" means below
INVENTORY = "nodes:\n" + "".join(
    f"  - {{id: node-{i}, trust: trusted, memory: 4GiB, flops_per_s: 1.0e11}}\n"
    for i in range(3))


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Rig:
    tmp: Path
    monitor: ServiceProcess
    metrics_port: int
    bed: tb.Testbed
    agent_args: list[str]

    def state(self) -> mpb.EnvironmentState:
        with self.bed.transport().sync_channel(self.monitor.address) as ch:  # as an admin
            return mpb_grpc.MonitorStub(ch).GetState(mpb.GetStateRequest(), timeout=5)

    def wait(self, pred: Callable[[mpb.EnvironmentState], bool], timeout_s: float,
             poll_s: float = INTERVAL / 5) -> tuple[mpb.EnvironmentState, float]:
        """Poll until ``pred`` holds; returns the state and the seconds it took."""
        start = time.monotonic()
        while True:
            state = self.state()
            if pred(state):
                return state, time.monotonic() - start
            if time.monotonic() - start > timeout_s:
                raise AssertionError(f"not reached in {timeout_s}s; last state:\n{state}")
            time.sleep(poll_s)

    @contextmanager
    def traffic(self) -> Iterator[None]:
        """Requests back to back through the entry, in a thread, while the block runs."""
        stop = threading.Event()
        errors: list[BaseException] = []

        def loop() -> None:
            try:
                while not stop.is_set():
                    self.bed.generate("node-0", token_ids=PROMPT, max_new_tokens=24,
                                      timeout_s=60)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
                errors.append(exc)

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(60)
        if errors:
            raise errors[0]

    def restart(self, node_id: str) -> None:
        """Start ``node_id`` again: its state directory, the same port."""
        self.bed.restart(node_id)


def view(state: mpb.EnvironmentState, node_id: str) -> mpb.NodeView:
    return next(v for v in state.nodes if v.state.node_id == node_id)


def link(state: mpb.EnvironmentState, src: str, dst: str) -> mpb.LinkView | None:
    return next((lk for lk in state.link_views if lk.src == src and lk.dst == dst), None)


def near(x: float, want: float) -> bool:
    return abs(x - want) <= TOL * want


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    tmp = tmp_path_factory.mktemp("monitoring")
    shards = ensure_model(tmp / "model", tmp / "shards", layers=4, hidden=64)
    (tmp / "inventory.yaml").write_text(INVENTORY)
    metrics_port = free_port()
    pki = LocalPki(tmp / PKI_DIR)  # one CA for the monitor and the agents
    monitor = start_service("monitor", tmp, pki=pki, args=[
        "--inventory", str(tmp / "inventory.yaml"), "--report-interval-s", str(INTERVAL),
        "--missed-cycles", "3", "--metrics-listen", f"127.0.0.1:{metrics_port}",
        "--layer-alpha", "0.7"])  # a test bed wants layer costs to follow within cycles
    # Bulk-probe idle links every cycle (the default is every ten): a test bed
    # changes conditions often and wants the figures to follow within cycles.
    agent_args = ["--monitor", monitor.address, "--report-interval-s", str(INTERVAL),
                  "--bandwidth-probe-cycles", "1"]
    bed = tb.Testbed.up(3, shards, tmp / "bed", extra_args=agent_args, pki=pki)
    try:
        bed.apply(bed.even_plan())  # ring node-0 -> node-1 -> node-2 -> node-0
        yield Rig(tmp, monitor, metrics_port, bed, agent_args)
    finally:
        bed.down()
        monitor.stop()


def test_emulated_link_delay_and_bandwidth_are_reported(rig: Rig) -> None:
    # node-2 -> node-1 carries no frames (it is the ring backwards): probes time it.
    # Delays well above loopback RTT (a few ms on a busy machine), which is real and reported.
    for delay, bw in ((0.1, 8e6), (0.05, 4e6)):
        rig.bed.set_conditions("node-2", link_delay_s={"node-1": delay},
                               link_bandwidth_bps={"node-1": bw})
        _, took = rig.wait(lambda s, d=delay, b=bw: (lk := link(s, "node-2", "node-1"))
                           is not None and near(lk.rtt_s, d) and near(lk.bandwidth_bps, b),
                           timeout_s=40 * INTERVAL)
        lk = link(rig.state(), "node-2", "node-1")
        assert lk is not None
        print(f"emulated {delay * 1e3:.0f} ms / {bw / 1e6:.0f} Mbit/s: reported "
              f"{lk.rtt_s * 1e3:.1f} ms / {lk.bandwidth_bps / 1e6:.2f} Mbit/s "
              f"within {took / INTERVAL:.1f} cycles")
    state = rig.state()
    # Links the ring uses are timed from real frames too, and stay fast (loopback).
    assert {(lk.src, lk.dst) for lk in state.links} >= {
        ("node-0", "node-1"), ("node-1", "node-2"), ("node-2", "node-0"), ("node-2", "node-1")}
    lk = link(state, "node-0", "node-1")
    assert lk is not None and lk.rtt_s < 0.02 and lk.bandwidth_bps > 1e8
    body = urllib.request.urlopen(f"http://127.0.0.1:{rig.metrics_port}/metrics",
                                  timeout=5).read().decode()
    assert 'edgesplit_link_rtt_seconds{dst="node-1",src="node-2"}' in body
    assert 'edgesplit_node_alive{node="node-0"} 1.0' in body


def decode_per_layer(v: mpb.NodeView) -> float:
    """Mean smoothed decode seconds per token over the node's decoder layers."""
    times = [t.decode_s_per_token for t in v.layers
             if t.layer.WhichOneof("ref") == "index" and t.decode_s_per_token]
    assert times, f"{v.state.node_id} has no decode layer times yet"
    return statistics.fmean(times)


def window(rig: Rig, slowdown: float) -> float:
    """node-1's per-layer decode cost under ``slowdown``, read from the monitor.

    The first cycles let the monitor's EWMA (alpha 0.7 here) forget the previous
    window; the next few readings are averaged, because on a small shared
    machine single cycles jump with whatever else is running.
    """
    rig.bed.set_conditions("node-1", compute_slowdown=slowdown)
    time.sleep(4 * INTERVAL)  # 0.3 ** 4: 1% of the previous window left
    readings = []
    for _ in range(3):
        time.sleep(INTERVAL)
        readings.append(decode_per_layer(view(rig.state(), "node-1")))
    return statistics.fmean(readings)


def test_compute_slowdown_shows_in_per_layer_costs(rig: Rig, capsys: pytest.CaptureFixture[str]
                                                    ) -> None:
    factor = 3.0
    with rig.traffic():
        try:
            costs = [window(rig, factor if i % 2 else 1.0) for i in range(11)]
        finally:
            rig.bed.set_conditions("node-1", compute_slowdown=1.0)
    # Each slow window against the mean of the normal windows on either side; the
    # median of five, because one window in a few catches a burst of other work.
    ratios = [costs[i] / ((costs[i - 1] + costs[i + 1]) / 2) for i in range(1, 11, 2)]
    print("node-1 decode per layer (ms):", [round(c * 1e3, 3) for c in costs],
          "ratios", [round(r, 2) for r in ratios])
    assert near(statistics.median(ratios), factor)
    # The entry's finished requests reached the monitor as latency and SLA figures.
    state = rig.state()
    assert state.requests_total > 0 and state.latency_ewma_s > 0 and state.ttft_ewma_s > 0
    assert state.window_requests > 0
    figures = capsys.readouterr().out
    code = cli_main(["status", "--monitor", rig.monitor.address, "--json",
                     "--testbed-dir", rig.bed.base])  # its admin certificate
    data = json.loads(capsys.readouterr().out)["monitor"]
    with capsys.disabled():
        print(figures, end="")  # the measured figures stay visible with -s
    assert code == 0 and data["requests_total"] > 0
    assert {n["node"]: n["alive"] for n in data["nodes"]} == dict.fromkeys(
        ("node-0", "node-1", "node-2"), True)


def test_killed_node_is_dead_within_three_cycles_and_alive_after_restart(rig: Rig) -> None:
    rig.wait(lambda s: view(s, "node-2").state.alive, timeout_s=10)
    os.kill(rig.bed.node("node-2").pid, signal.SIGKILL)
    killed = time.monotonic()
    state, _ = rig.wait(lambda s: not view(s, "node-2").state.alive, timeout_s=10,
                        poll_s=0.02)
    dead_after = time.monotonic() - killed
    assert dead_after <= 3 * INTERVAL + 0.15, f"dead only after {dead_after:.2f}s"
    assert view(state, "node-0").state.alive and view(state, "node-1").state.alive
    reports = view(state, "node-2").reports
    address = rig.bed.node("node-2").address
    rig.restart("node-2")
    assert rig.bed.node("node-2").address == address  # the same port: peers find it
    restarted = time.monotonic()
    state, _ = rig.wait(lambda s: view(s, "node-2").state.alive, timeout_s=60)
    print(f"dead {dead_after:.2f}s after SIGKILL; alive {time.monotonic() - restarted:.1f}s "
          f"after restart")
    # A new incarnation: its reports are accepted although its sequence starts again at 0.
    assert view(state, "node-2").reports > reports
