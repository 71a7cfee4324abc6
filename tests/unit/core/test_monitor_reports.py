"""The agent-side report builder: deltas of cumulative counters, SLA verdicts."""

from __future__ import annotations

import argparse

import pytest

from edgesplit.bench import monitor as bench
from edgesplit.core.reports import (
    AgentCounters,
    LinkObservation,
    RequestSample,
    ResourceSample,
    build_report,
)
from edgesplit.core.types import NodeId, Part

A, B, C = NodeId("a"), NodeId("b"), NodeId("c")
RES = ResourceSample(0.5, 1, 2)


def test_first_report_covers_everything_since_start() -> None:
    cur = AgentCounters(decode={0: (0.2, 10)}, bytes_sent={B: 4096})
    r = build_report(A, 0, 1.0, RES, cur)
    [(layer, seconds)] = r.decode_layer_s
    assert layer == 0 and seconds == pytest.approx(0.02)
    assert r.activation_bytes == ((B, 4096),)
    assert r.compute_busy_s == pytest.approx(0.2)
    assert r.problem() is None


def test_report_holds_per_cycle_deltas_and_skips_idle_layers() -> None:
    prev = AgentCounters(
        prefill={0: (1.0, 100)}, decode={0: (0.2, 10), 1: (0.3, 10)}, bytes_sent={B: 1000}
    )
    cur = AgentCounters(
        prefill={0: (1.0, 100)},  # no prefill this cycle
        decode={0: (0.5, 20), 1: (0.3, 10), Part.EMBED: (0.01, 10)},  # layer 1 idle; embed ran
        bytes_sent={B: 5000, C: 10},
    )
    obs = (LinkObservation(B, 0.01, 1e8),)
    r = build_report(A, 7, 2.0, RES, cur, prev, links=obs, incarnation=2)
    assert r.prefill_layer_s == ()
    assert dict(r.decode_layer_s) == {Part.EMBED: pytest.approx(0.001), 0: pytest.approx(0.03)}
    assert dict(r.activation_bytes) == {B: 4000, C: 10}
    assert r.compute_busy_s == pytest.approx(0.31)
    assert (r.seq, r.incarnation, r.links) == (7, 2, obs)
    assert r.problem() is None


def test_a_reset_byte_counter_reports_nothing_rather_than_a_negative() -> None:
    r = build_report(
        A, 1, 1.0, RES, AgentCounters(bytes_sent={B: 10}), AgentCounters(bytes_sent={B: 99})
    )
    assert r.activation_bytes == ()


def test_unjudged_requests_get_a_verdict_from_the_step_budget() -> None:
    finished = (
        RequestSample(0.3, (0.1, 0.2)),
        RequestSample(0.3, (0.1, 0.5)),
        RequestSample(0.3, (0.9,), sla_met=True),
    )
    r = build_report(A, 0, 0.0, RES, AgentCounters(), finished=finished, sla_step_budget_s=0.4)
    assert [q.sla_met for q in r.requests] == [True, False, True]


def test_bench_runs_small_and_reports_its_figures() -> None:
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    out = bench.run(parser.parse_args(["--nodes", "40", "--cycles", "4", "--layers", "8"]))
    for key in ("nodes", "reports_per_s", "state_build_ms_p95", "agent_cycle_cpu_ms"):
        assert key in out
    assert out["nodes"] == 40 and out["reports"] >= 40 * 3
    assert out["cluster_links"] == 40 * 5
