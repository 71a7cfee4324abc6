"""The whole control loop on the test bed: monitor, split reviser, broadcaster,
orchestrator and node agents as processes on 127.0.0.1.

* an orchestrator restart keeps the epoch and starts no rollout;
* a bandwidth drop on the active route leads to a new committed epoch right
  after the cool-down, and no request fails across the reconfiguration;
* a session whose steps miss the SLA when a new epoch commits moves to the
  new route at once, with the same tokens, and so does a step stuck on a
  node that stopped answering;
* killing a node mid-generation still completes every request, with output
  identical to the fault-free greedy run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from edgesplit.core.control import Decision, Outcome
from edgesplit.procs import start_service
from edgesplit.rpc.convert_orchestrator import decision_from_proto
from edgesplit.scenario.runner import Run, default_show
from edgesplit.scenario.spec import parse_scenario
from edgesplit.v1 import broadcaster_pb2, broadcaster_pb2_grpc, orchestrator_pb2_grpc
from edgesplit.v1 import orchestrator_pb2 as opb

COOLDOWN_S = 4.0
INTERVAL_S = 0.5
STEP_TIMEOUT_S = 40.0  # a step no answer comes back for fails after this

SCENARIO = {
    "name": "e2e", "duration_s": 30, "sla_step_s": 0.4,
    "model": {"family": "qwen3", "layers": 6, "hidden": 128, "heads": 4, "kv_heads": 2,
              "seed": 3},
    "nodes": [
        {"id": "entry", "trust": "trusted", "memory_gb": 8, "slowdown": 25, "entry": True},
        {"id": "edge-a", "trust": "trusted", "memory_gb": 16, "slowdown": 1},
        {"id": "edge-b", "trust": "trusted", "memory_gb": 16, "slowdown": 1},
    ],
    "default_link": {"delay_ms": 1, "bandwidth_mbps": 1000},
    "load": {"concurrency": 1, "prompt_tokens": 8, "new_tokens": 8},
    "events": [],
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    sc = parse_scenario(SCENARIO)
    run = Run(sc, "adaptive", 0, tmp_path_factory.mktemp("stack"), default_show,
              orchestrator_args=["--cooldown-s", str(COOLDOWN_S),
                                 "--interval-s", str(INTERVAL_S)],
              agent_args=["--step-timeout-s", str(STEP_TIMEOUT_S)])
    try:
        run.start()
        asyncio.run(run.wait_for_plan())
        yield run
    finally:
        run.stop()


def _status(run: Run) -> opb.StatusResponse:
    with run.transport().sync_channel(run.addr["orchestrator"]) as ch:
        return orchestrator_pb2_grpc.OrchestratorStub(ch).Status(opb.StatusRequest(), timeout=10)


def _history(run: Run) -> list[Decision]:
    with run.transport().sync_channel(run.addr["orchestrator"]) as ch:
        stub = orchestrator_pb2_grpc.OrchestratorStub(ch)
        reply = stub.History(opb.HistoryRequest(limit=500), timeout=10)
    return [decision_from_proto(d) for d in reply.decisions]


def _generate(run: Run, token_ids: list[int], max_new_tokens: int, **kw: Any) -> list[Any]:
    """Generate on the entry, as the run's client."""
    assert run.bed is not None
    return run.bed.generate("entry", token_ids=token_ids, max_new_tokens=max_new_tokens, **kw)


def _testbed_dir(run: Run) -> str:
    """The bed's state directory: `edgesplit status` finds its admin certificate there."""
    assert run.bed is not None
    return run.bed.base


def _route_nodes(run: Run) -> list[str]:
    return [s.node_id for s in _status(run).plan.routes[0].segments]


def test_1_orchestrator_restart_keeps_epoch_without_rollout(stack: Run, tmp_path: Path) -> None:
    before = _status(stack).plan
    decisions = len(_history(stack))
    orch = next(s for s in stack.services if s.name == "orchestrator")
    assert orch.stop() == 0
    again = start_service("orchestrator", stack.base, orch.args, pki=stack.pki)
    stack.services[stack.services.index(orch)] = again
    stack.addr["orchestrator"] = again.address
    time.sleep(6 * INTERVAL_S)
    after = _status(stack).plan
    assert after == before
    assert len(_history(stack)) == decisions  # no new decision, so no rollout
    with stack.transport().sync_channel(stack.addr["broadcaster"]) as ch:
        current = broadcaster_pb2_grpc.BroadcasterStub(ch).Current(
            broadcaster_pb2.CurrentRequest(), timeout=10)
    assert current.plan.epoch == before.epoch


def test_2_bandwidth_drop_reconfigures_without_failures(stack: Run) -> None:
    start = _status(stack)
    route = [s.node_id for s in start.plan.routes[0].segments]
    assert len(route) > 1, f"the initial plan should use a remote node: {route}"
    far = route[1]
    errors: list[str] = []
    done = asyncio.Event()

    async def load() -> None:
        loop = asyncio.get_running_loop()
        while not done.is_set():
            try:
                await loop.run_in_executor(None, lambda: _generate(stack, [5, 6, 7, 8], 6))
            except grpc.RpcError as exc:
                errors.append(f"{exc.code().name}: {exc.details()}")

    async def scenario() -> Decision:
        task = asyncio.create_task(load())
        await asyncio.sleep(2.0)
        # Degrade the link from the entry to the route's second node below the
        # 50 Mbit/s trigger, in both directions.
        stack._link("entry", far, 20.0, 5.0)
        deadline = time.monotonic() + 60
        found = None
        while time.monotonic() < deadline and found is None:
            await asyncio.sleep(INTERVAL_S)
            found = next((d for d in _history(stack) if "bandwidth" in d.triggers
                          and d.outcome is Outcome.COMMITTED), None)
        await asyncio.sleep(2.0)  # requests straddle the switch
        done.set()
        await task
        assert found is not None, [(d.triggers, d.outcome, d.detail) for d in _history(stack)]
        return found

    decision = asyncio.run(scenario())
    assert decision.new_epoch > start.plan.epoch
    # Trigger to commit inside one monitoring interval (shards cached locally).
    assert decision.trigger_to_commit_s < 2 * INTERVAL_S + 1.0
    assert not errors, errors
    new_route = _route_nodes(stack)
    assert new_route != route or _status(stack).plan != start.plan


def test_2b_a_session_missing_the_sla_moves_to_the_new_epoch(stack: Run) -> None:
    """The link to the route's first remote node gets slow (300 ms a way) and
    thin (the bandwidth trigger): the session in flight, whose steps now miss
    the 0.4 s SLA, replays on the new epoch's route instead of draining on the
    slow one, and its greedy tokens are those of an undisturbed run."""
    prompt, n = [21, 22, 23], 40
    expected = [r.token_id for r in _generate(stack, prompt, n)]
    start = _status(stack).plan.epoch
    far = next(node for node in _route_nodes(stack) if node != "entry")

    async def slowed() -> list[Any]:
        call = asyncio.get_running_loop().run_in_executor(
            None, lambda: _generate(stack, prompt, n, timeout_s=120))
        await asyncio.sleep(0.3)
        stack._link("entry", far, 300.0, 20.0)
        return await call

    try:
        got = asyncio.run(slowed())
    finally:
        stack._link("entry", far, 1.0, 1000.0)
    assert [r.token_id for r in got] == expected
    epochs = [r.epoch for r in got]
    assert epochs[0] == start and epochs[-1] > start, epochs
    assert far not in [s.node_id for s in _status(stack).plan.routes[0].segments][:2]


def test_2c_a_step_stuck_on_a_node_moves_to_the_new_epoch(stack: Run) -> None:
    """The route's first remote node stops answering (its emulated device
    hangs with a step in it) and its link to the entry gets thin: once the
    new epoch commits, the stuck step is given up past the SLA and replayed
    on the new route, so the call ends long before the step timeout would
    have failed the step (the call's own deadline is half of it)."""
    for node in ("edge-a", "edge-b"):  # only the stuck node's link will be thin
        stack._link("entry", node, 1.0, 1000.0)
    time.sleep(COOLDOWN_S)  # links re-measured; the last reconfiguration out of the cool-down
    prompt, n = [31, 32, 33], 12
    expected = [r.token_id for r in _generate(stack, prompt, n)]
    far = next(node for node in _route_nodes(stack) if node != "entry")

    async def stuck() -> list[Any]:
        call = asyncio.get_running_loop().run_in_executor(
            None, lambda: _generate(stack, prompt, n, timeout_s=STEP_TIMEOUT_S / 2))
        await asyncio.sleep(0.2)
        stack._conditions(far, compute_slowdown=1e6)
        stack._link("entry", far, 1.0, 20.0)
        return await call

    try:
        got = asyncio.run(stuck())
    finally:
        stack._conditions(far, compute_slowdown=1.0)
        stack._link("entry", far, 1.0, 1000.0)
    assert [r.token_id for r in got] == expected
    assert got[-1].epoch > got[0].epoch
    assert far not in _route_nodes(stack)


def test_3_killed_node_mid_generation_completes_identically(stack: Run) -> None:
    prompts = [[9, 10, 11], [12, 13, 14, 15, 16], [17, 18]]
    expected = [[r.token_id for r in _generate(stack, p, 24)] for p in prompts]
    victim = next(n for n in _route_nodes(stack) if n != "entry")

    async def both() -> list[list[int]]:
        loop = asyncio.get_running_loop()
        calls = [loop.run_in_executor(None, lambda p=p: [
            r.token_id for r in _generate(stack, p, 24, timeout_s=120)]) for p in prompts]
        await asyncio.sleep(0.3)  # mid-generation
        assert stack.bed is not None
        stack.bed.kill(victim)
        return list(await asyncio.gather(*calls))

    got = asyncio.run(both())
    assert got == expected
    assert victim not in _route_nodes(stack)
    failover = [d for d in _history(stack) if "failover" in d.triggers]
    assert failover and failover[0].outcome is Outcome.COMMITTED


def test_4_status_cli_shows_orchestrator_and_monitor(stack: Run) -> None:
    import json
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "edgesplit.cli", "status", "--orchestrator",
         stack.addr["orchestrator"], "--monitor", stack.addr["monitor"], "--json",
         "--testbed-dir", _testbed_dir(stack)],
        capture_output=True, text=True, check=True, timeout=60)
    data = json.loads(out.stdout)
    assert data["orchestrator"]["status"]["plan"]["epoch"] == _status(stack).plan.epoch
    assert any("failover" in d.get("triggers", []) for d in data["orchestrator"]["history"])
    assert {n["node"] for n in data["monitor"]["nodes"]} >= {"entry", "edge-a", "edge-b"}
    table = subprocess.run(
        [sys.executable, "-m", "edgesplit.cli", "status", "--orchestrator",
         stack.addr["orchestrator"], "--testbed-dir", _testbed_dir(stack)], capture_output=True, text=True, check=True, timeout=60)
    assert "route of entry" in table.stdout


def test_5_status_watch_fits_80_columns_in_tmux(stack: Run) -> None:
    """``status --watch`` in a real 80-column terminal: a timestamp, the
    reconfiguration counts as a table, and no line the terminal had to wrap."""
    import os
    import re
    import shutil
    import subprocess
    import sys

    from edgesplit.testbed import ROOT

    tmux = shutil.which("tmux")
    if tmux is None:
        pytest.skip("tmux is not installed (`make setup` installs it from Debian)")
    server = ["-L", f"edgesplit-test-{os.getpid()}"]  # a private tmux server
    watch = (f"{sys.executable} -m edgesplit.cli status --watch --interval 0.5 "
             f"--orchestrator {stack.addr['orchestrator']} --monitor {stack.addr['monitor']} "
             f"--testbed-dir {_testbed_dir(stack)}")
    subprocess.run([tmux, *server, "new-session", "-d", "-s", "watch", "-x", "80", "-y", "60",
                    "-c", str(ROOT), "-e", f"PYTHONPATH={os.environ.get('PYTHONPATH', ROOT)}",
                    watch], check=True, timeout=30)
    def capture(*flags: str) -> list[str]:
        out = subprocess.run([tmux, *server, "capture-pane", "-p", *flags, "-t", "watch"],
                             capture_output=True, text=True, check=True).stdout
        return [line.rstrip() for line in out.splitlines()]  # (-J keeps trailing spaces)

    try:
        # -J joins lines the terminal wrapped: the same lines both ways means none
        # was. A pair captured across a refresh can differ without any wrap, so
        # the pair is taken again until one whole screen agrees.
        deadline = time.monotonic() + 60
        while True:
            lines, plain = capture("-J"), capture()
            joined = "\n".join(lines)
            if "RECONFIGURED BY" in joined and "NODE" in joined and "LINK" in joined \
                    and lines == plain:
                break
            assert time.monotonic() < deadline, \
                f"status --watch showed (joined, then plain):\n{joined}\n---\n" + "\n".join(plain)
            time.sleep(0.3)
    finally:
        subprocess.run([tmux, *server, "kill-server"], check=False, timeout=30)
    print(joined)
    assert all(len(line) <= 80 for line in lines)
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", joined)
    assert re.search(r"^failover\s+\d+\s*$", joined, re.MULTILINE), joined
    assert re.search(r"^total\s+\d+\s*$", joined, re.MULTILINE)
    assert "{" not in joined  # no raw dicts
