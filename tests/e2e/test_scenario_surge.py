"""The surge claim, end to end (slow: about twelve minutes on 2 cores): on
smart-city-surge (2 -> 8 -> 24 closed-loop clients, backhaul drop, an edge
server lost) the adaptive split serves at least five times the requests of the
whole model on the entry device, fails none, and static does visibly worse.
The issue's SLA (>= 0.95) and utilisation (>= 0.8) targets need batching and
are not asserted here: README, "Surge", gives the measured figures."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from edgesplit.cli.scenario_cmd import execute


@pytest.mark.slow
def test_smart_city_surge_adaptive_serves_the_surge(tmp_path: Path) -> None:
    report = execute(argparse.Namespace(name="smart-city-surge", mode="all", duration=None,
                                        json=True, out=str(tmp_path)))
    res = report["results"]
    assert set(res) == {"adaptive", "static", "single-device"}
    adaptive, static, alone = res["adaptive"], res["static"], res["single-device"]
    for r in res.values():
        assert {"requests_per_s", "sla_hit_rate", "requests_failed", "mean_utilization",
                "requests_refused"} <= set(r)
    assert adaptive["requests_failed"] == 0
    assert adaptive["requests_per_s"] >= 5 * alone["requests_per_s"]
    assert static["requests_failed"] > 0 or static["requests_per_s"] < adaptive["requests_per_s"]
    assert alone["reconfigurations"] == 0 and static["reconfigurations"] == 0
