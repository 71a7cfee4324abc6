"""The main job's claim, end to end (slow: about five minutes on 2 cores):
on the smart-city script the adaptive mode holds the SLA with no failed
request and no privacy violation, and the static mode does visibly worse."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from edgesplit.cli.scenario_cmd import execute


@pytest.mark.slow
def test_smart_city_adaptive_beats_static(tmp_path: Path) -> None:
    report = execute(argparse.Namespace(name="smart-city", mode="both", duration=None,
                                        json=True, out=str(tmp_path)))
    adaptive, static = report["results"]["adaptive"], report["results"]["static"]
    assert adaptive["requests_failed"] == 0
    assert adaptive["privacy_violations"] == 0
    assert adaptive["sla_hit_rate"] >= 0.95
    assert adaptive["reconfigurations"] >= 1
    assert static["sla_hit_rate"] < adaptive["sla_hit_rate"] - 0.1
    assert (tmp_path / "scenario-smart-city-cdf.png").stat().st_size > 0
    assert (tmp_path / "scenario-smart-city-timeline.png").stat().st_size > 0
