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
    assert s["requests_per_s"] == 0.3 and s["requests_refused"] == 0
    assert s["peak_load_utilization"] is None  # no step up of closed-loop clients


def test_refused_requests_are_failed_and_sla_misses() -> None:
    sc = parse_scenario(BASE)
    records = [RequestRecord(0.0, True, False, 0.2, [0.1], {1}),
               RequestRecord(0.5, False, False, error="RESOURCE_EXHAUSTED: retry after 2s")]
    s = summarize(sc, "adaptive", 2.0, records, [], Live(peak_utilization=[0.9, 0.8]))
    assert (s["requests_failed"], s["requests_refused"]) == (1, 1)
    assert s["sla_hit_rate"] == 0.5  # refusing is no way to meet the SLA
    assert s["peak_load_utilization"] == 0.85


def test_load_events_step_the_closed_loop_clients() -> None:
    sc = load_scenario("smart-city-surge")
    assert sc.load.requests_per_s == 0 and sc.load.concurrency == 2
    steps = [e.args["concurrency"] for e in sc.events if e.kind == "load"]
    assert steps == [8, 24]
    assert [e.describe() for e in sc.events if e.kind == "load"][-1] == \
        "load: 24 concurrent clients"
    with pytest.raises(ScenarioError, match="concurrency"):
        parse_scenario({**BASE, "events": [{"at": 1, "load": {"concurrency": -1}}]})


def test_single_device_keeps_the_entry_and_its_events() -> None:
    from edgesplit.scenario.runner import single_device

    sc = parse_scenario({**BASE, "events": [
        {"at": 1, "link": {"a": "a", "b": "b"}, "delay_ms": 3}, {"at": 2, "kill": "b"},
        {"at": 3, "node": "a", "slowdown": 4}, {"at": 4, "load": {"concurrency": 5}}]})
    alone = single_device(sc)
    assert [n.id for n in alone.nodes] == ["a"] and alone.entry.id == "a"
    assert [e.kind for e in alone.events] == ["node", "load"]


async def test_client_pool_grows_and_shrinks() -> None:
    import asyncio
    import random

    from edgesplit.scenario.load import ClientPool

    running: set[int] = set()
    seen: list[int] = []

    async def one(rng: random.Random) -> None:
        key = id(rng)
        running.add(key)
        seen.append(len(running))
        await asyncio.sleep(0.01)
        running.discard(key)

    stop = asyncio.Event()
    pool = ClientPool(one, 0.0, stop)
    pool.resize(2)
    await asyncio.sleep(0.05)
    assert max(seen) == 2
    pool.resize(5)
    await asyncio.sleep(0.05)
    assert max(seen) == 5 and pool.peak == 5
    pool.resize(1)
    await asyncio.sleep(0.05)
    seen.clear()
    await asyncio.sleep(0.05)
    assert seen and max(seen) == 1
    stop.set()
    await pool.join()
