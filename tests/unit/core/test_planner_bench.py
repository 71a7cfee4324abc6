"""``edgesplit bench planner`` runs end to end on shrunken families."""

from __future__ import annotations

import argparse

import pytest

from edgesplit.bench import planner as bench


def test_bench_reports_every_figure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        bench,
        "FAMILIES",
        (
            bench.Family("n8_l32", 5, 8, 2, 2),
            bench.Family("n16_l80", 9, 10, 1, 1),
            bench.Family("n64_l80", 20, 12, 1, 1),
            bench.Family("n256_l128", 24, 16, 1, 1),
        ),
    )
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    out = bench.run(
        parser.parse_args(["--quick", "--milp-time-limit", "10", "--exact-states", "100000"])
    )
    assert out["instances"] == 5
    assert out["exact_matches_milp_fraction"] == 1.0
    assert set(out["solve_ms_p95"]) == {"n8_l32", "n16_l80", "n64_l80", "n256_l128"}
    assert set(out["vs_baselines"]) == {
        "static",
        "memory_proportional",
        "greedy_fill",
        "throughput_balanced",
    }
    assert out["heuristic_gap_p95"] is not None and out["heuristic_gap_p95"] >= 0.0
