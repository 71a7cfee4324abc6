"""Scenario files: the built-ins load, mistakes are named, results add up."""

from __future__ import annotations

import pytest

from edgesplit.scenario.report import privacy_violations, summarize
from edgesplit.scenario.runner import Live, RequestRecord
from edgesplit.scenario.spec import BUILTIN, ScenarioError, load_scenario, parse_scenario
from edgesplit.v1 import common_pb2

BASE = {
    "name": "t", "nodes": [{"id": "a", "trust": "trusted", "entry": True},
                           {"id": "b"}],
    "events": [{"at": 5, "kill": "b"}, {"at": 1, "link": {"a": "a", "b": "b"},
                                          "delay_ms": 3}],
}


@pytest.mark.parametrize("path", sorted(BUILTIN.glob("*.yaml")), ids=lambda p: p.stem)
def test_builtin_scenarios_load(path: object) -> None:
    sc = load_scenario(str(path))
    assert sc.entry.trusted
    assert sc.events and [e.at for e in sc.events] == sorted(e.at for e in sc.events)
    assert all(0 < e.at < sc.duration_s for e in sc.events)
    slowest = max(n.slowdown for n in sc.nodes) / min(n.slowdown for n in sc.nodes)
    assert slowest >= 8  # a Jetson-class node next to an A6000-class one


def test_events_sorted_and_links_default() -> None:
    sc = parse_scenario(BASE)
    assert [e.kind for e in sc.events] == ["link", "kill"]
    assert sc.link("a", "b").delay_ms == sc.default_link.delay_ms


@pytest.mark.parametrize("change,message", [
    ({"events": [{"at": 1, "kill": "zz"}]}, "unknown node"),
    ({"nodes": [{"id": "a", "entry": True}, {"id": "b", "entry": True}]}, "exactly one"),
    ({"nodes": [{"id": "a", "entry": True}, {"id": "a"}]}, "duplicate"),
    ({"events": [{"at": 1, "frobnicate": 1}]}, "expected link"),
])
def test_bad_scenarios_are_named(change: dict[str, object], message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        parse_scenario({**BASE, **change})
    with pytest.raises(ScenarioError, match="built-in"):
        load_scenario("no-such-scenario")


def test_summary_counts_failures_privacy_and_reconfigurations() -> None:
    sc = parse_scenario(BASE)
    plan = common_pb2.Plan(epoch=2, routes=[common_pb2.Route(entry="a", segments=[
        common_pb2.Segment(node_id="a", start=0, end=0, parts=[common_pb2.PART_EMBED]),
        common_pb2.Segment(node_id="b", start=0, end=2),  # layer 0 on untrusted b
        common_pb2.Segment(node_id="a", start=2, end=2, parts=[common_pb2.PART_HEAD])])])
    live = Live(plans={2: plan}, utilization=[0.5, 0.7])
    records = [
        RequestRecord(0.0, True, False, 0.2, [0.1, 0.1], {1}),
        RequestRecord(1.0, True, True, 0.2, [0.1, 0.2], {2}),  # private on a leaky route
        RequestRecord(2.0, True, False, 0.2, [0.9, 0.9], {1}),  # too slow
        RequestRecord(3.0, False, False, error="UNAVAILABLE: x"),
    ]
    assert privacy_violations(sc, records, live) == 1
    s = summarize(sc, "adaptive", 10.0, records, [], live)
    assert (s["requests_ok"], s["requests_failed"]) == (3, 1)
    assert s["sla_hit_rate"] == 0.5
    assert s["mean_utilization"] == 0.6
    assert s["errors"] == ["UNAVAILABLE"]
