"""The pictures: the timeline's epoch spans (pure), and that every picture
draws from realistic inputs (a real PNG file, not an exception)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgesplit.cli.plots import plan_png, solve_time_png
from edgesplit.core.control import Change, Decision, Outcome
from edgesplit.core.route import route_from_cuts
from edgesplit.core.types import Epoch, NodeId, Plan
from edgesplit.rpc.convert import plan_to_proto
from edgesplit.scenario.report import _layers, epoch_spans, timeline_png
from edgesplit.scenario.runner import Live, RequestRecord
from edgesplit.scenario.spec import parse_scenario

pytest.importorskip("matplotlib")
PNG = b"\x89PNG\r\n\x1a\n"


def decision(at: float, new: int, outcome: Outcome = Outcome.COMMITTED,
             t2c: float = 0.5) -> Decision:
    return Decision(at=at, triggers=("latency",), change=Change.MIGRATE, outcome=outcome,
                    old_epoch=new - 1, new_epoch=new, trigger_to_commit_s=t2c)


def test_epoch_spans_start_with_the_initial_plan_and_follow_commits() -> None:
    history = [decision(995.0, 1), decision(1020.0, 2), decision(1030.0, 3, Outcome.ABORTED),
               decision(1050.0, 3)]
    assert epoch_spans(history, started_at=1000.0, end_s=60.0) == [
        (0.0, 20.5, 1), (20.5, 50.5, 2), (50.5, 60.0, 3)]
    assert epoch_spans([], 1000.0, 10.0) == []


def plan(epoch: int, cut: int) -> Plan:
    a, b = NodeId("a"), NodeId("b")
    return Plan(Epoch(epoch), "d", (route_from_cuts(a, [a, b], [cut], 6),))


def test_layers_held_per_node() -> None:
    p = plan(1, 2)
    assert _layers(p, "a") == "embed+L0-1+head"
    assert _layers(p, "b") == "L2-5"
    assert _layers(plan(2, 1), "a") == "embed+L0+head"
    assert _layers(p, "c") == ""


def test_timeline_png_draws_both_modes(tmp_path: Path) -> None:
    sc = parse_scenario({
        "name": "t", "duration_s": 30, "sla_step_s": 0.2,
        "model": {"layers": 6}, "nodes": [
            {"id": "a", "trust": "trusted", "memory_gb": 8, "slowdown": 1, "entry": True},
            {"id": "b", "trust": "untrusted", "memory_gb": 8, "slowdown": 1}],
        "load": {"concurrency": 1, "prompt_tokens": 4, "new_tokens": 4},
        "events": [{"at": 10, "kill": "b"}]})
    records = [RequestRecord(float(t), True, False, 0.05, [0.1, 0.12, 0.3]) for t in range(25)]
    records.append(RequestRecord(12.0, False, False, error="UNAVAILABLE: gone"))
    live = Live(plans={1: plan_to_proto(plan(1, 2)), 2: plan_to_proto(plan(2, 4))},
                started_at=1000.0)
    runs = {"adaptive": (records, [decision(999.0, 1), decision(1012.0, 2)], live),
            "static": (records, [decision(999.0, 1)], live)}
    out = tmp_path / "timeline.png"
    timeline_png(out, sc, runs, 30.0)
    assert out.read_bytes().startswith(PNG)


def test_plan_and_solve_time_pngs(tmp_path: Path) -> None:
    from edgesplit.core.cluster_config import plan_to_dict
    from edgesplit.core.types import ClusterState, LinkState, NodeState, Trust

    state = ClusterState(
        (NodeState(NodeId("a"), Trust.TRUSTED, 2**33, 1e12),
         NodeState(NodeId("b"), Trust.UNTRUSTED, 2**33, 1e12),
         NodeState(NodeId("c"), Trust.UNTRUSTED, 2**33, 1e12)),
        (LinkState(NodeId("a"), NodeId("b"), 0.004, 2e8),
         LinkState(NodeId("b"), NodeId("a"), 0.004, 2e8)))
    out = {"model": "m", "plan": json.loads(json.dumps(plan_to_dict(plan(1, 2)))),
           "cost": {"latency_s": 0.03, "ttft_s": 0.4}, "method": "exact"}
    plan_png(tmp_path / "plan.png", out, state)
    assert (tmp_path / "plan.png").read_bytes().startswith(PNG)
    solve_time_png(tmp_path / "solve.png", [(8, 32, [1.0, 2.0]), (64, 80, [40.0, 90.0])])
    assert (tmp_path / "solve.png").read_bytes().startswith(PNG)
