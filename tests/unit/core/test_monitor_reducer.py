"""Monitor reducer: EWMA folding, liveness, enrolment, staleness, SLA window, E(t) views."""

from __future__ import annotations

import pytest

from edgesplit.core.cost import layer_times
from edgesplit.core.inventory import NodeInventory
from edgesplit.core.monitor import (
    IngestOutcome,
    Monitor,
    MonitorConfig,
    RefuseReason,
    ReportRefused,
)
from edgesplit.core.reports import (
    GpuSample,
    LinkObservation,
    LinkSource,
    NodeReport,
    RequestSample,
    ResourceSample,
)
from edgesplit.core.types import LayerCost, ModelProfile, NodeId, NodeState, Trust

GIB = 1 << 30


def report(
    node: str,
    seq: int,
    *,
    now: float | None = None,
    cpu: float = 0.2,
    gpu: float | None = None,
    decode: tuple[tuple[int, float], ...] = (),
    prefill: tuple[tuple[int, float], ...] = (),
    links: tuple[tuple[str, float | None, float | None], ...] = (),
    requests: tuple[RequestSample, ...] = (),
    sent: tuple[tuple[str, int], ...] = (),
    busy_s: float = 0.0,
    incarnation: int = 0,
) -> NodeReport:
    """A report from ``node``; ``links`` are ``(peer, rtt_s, bandwidth_bps)``."""
    g = None if gpu is None else GpuSample(gpu, 2 * GIB, 16 * GIB)
    return NodeReport(
        node_id=NodeId(node),
        seq=seq,
        now=float(seq) if now is None else now,
        resources=ResourceSample(cpu, 4 * GIB, 16 * GIB, g, queue_depth=1, active_sessions=2),
        prefill_layer_s=prefill,
        decode_layer_s=decode,
        activation_bytes=tuple((NodeId(p), n) for p, n in sent),
        compute_busy_s=busy_s,
        requests=requests,
        links=tuple(LinkObservation(NodeId(p), rtt, bw, LinkSource.PROBE) for p, rtt, bw in links),
        incarnation=incarnation,
    )


def request(
    steps: tuple[float, ...], sla_met: bool | None = None, ttft: float = 0.2
) -> RequestSample:
    return RequestSample(ttft, steps, sla_met)


A, B, C = NodeId("a"), NodeId("b"), NodeId("c")


def refused(monitor: Monitor, now: float) -> dict[str, int]:
    return dict(monitor.snapshot(now).reports_refused)


# -- smoothing ---------------------------------------------------------------


def test_metrics_are_smoothed_with_the_configured_alpha() -> None:
    m = Monitor(MonitorConfig(alpha=0.5, layer_alpha=0.25), [A])
    m.ingest(report("a", 0, cpu=0.2, gpu=0.4, decode=((0, 0.010),)), now=0.0)
    m.ingest(report("a", 1, cpu=0.6, gpu=0.8, decode=((0, 0.030),)), now=1.0)
    node = m.snapshot(1.0).nodes[A]
    assert node.cpu_utilization == pytest.approx(0.4)
    assert node.gpu_utilization == pytest.approx(0.6)
    assert node.peak_utilization == pytest.approx(0.6)
    assert node.decode.get(0) == pytest.approx(0.015)
    assert node.reports == 2 and node.last_seen == 1.0


def test_layers_not_in_a_report_keep_their_last_figure() -> None:
    m = Monitor(MonitorConfig(layer_alpha=1.0), [A])
    m.ingest(report("a", 0, decode=((3, 0.02), (1, 0.01))), now=0.0)
    m.ingest(report("a", 1, decode=((2, 0.05),)), now=1.0)
    m.ingest(report("a", 2), now=2.0)
    d = m.snapshot(2.0).nodes[A].decode
    assert d.layers == (1, 2, 3)
    assert d.pairs() == ((1, 0.01), (2, 0.05), (3, 0.02))


def test_own_load_and_hop_rates_use_the_agents_own_interval() -> None:
    m = Monitor(MonitorConfig(alpha=1.0), [A])
    m.ingest(report("a", 0, now=100.0, cpu=0.9, busy_s=0.5, sent=(("b", 1000),)), now=0.0)
    m.ingest(report("a", 1, now=102.0, cpu=0.9, busy_s=0.5, sent=(("b", 1000),)), now=1.0)
    node = m.snapshot(1.0).nodes[A]
    assert node.own_load == pytest.approx(0.25)  # 0.5 s busy over the agent's 2 s
    assert node.background_utilization == pytest.approx(0.65)
    assert dict(node.hop_bytes_per_s)[B] == pytest.approx(500.0)


def test_link_ewma_and_partial_observations() -> None:
    m = Monitor(MonitorConfig(link_alpha=0.5), [A])
    m.ingest(report("a", 0, links=(("b", 0.010, 100e6),)), now=0.0)
    m.ingest(report("a", 1, links=(("b", 0.030, 50e6),)), now=1.0)
    m.ingest(report("a", 2, links=(("b", None, 25e6),)), now=2.0)  # bandwidth only
    link = m.snapshot(2.0).link(A, B)
    assert link is not None
    assert link.rtt_s == pytest.approx(0.020)  # the bandwidth-only sample left RTT alone
    assert link.bandwidth_bps == pytest.approx(50e6)  # 100 -> 75 -> 50 Mbit/s
    assert link.samples == 3 and link.last_seen == 2.0


def test_link_ewma_weighs_the_new_sample_by_alpha_not_one_minus_alpha() -> None:
    # alpha = 0.5 cannot tell alpha from 1 - alpha; 0.2 can: 10 ms then 30 ms
    # reads 14 ms (the old value keeps 0.8), never 26 ms.
    m = Monitor(MonitorConfig(link_alpha=0.2), [A])
    m.ingest(report("a", 0, links=(("b", 0.010, 100e6),)), now=0.0)
    m.ingest(report("a", 1, links=(("b", 0.030, 50e6),)), now=1.0)
    link = m.snapshot(1.0).link(A, B)
    assert link is not None
    assert link.rtt_s == pytest.approx(0.014)
    assert link.bandwidth_bps == pytest.approx(90e6)
    m.ingest(report("a", 2, links=(("b", 0.030, 50e6),)), now=2.0)
    link = m.snapshot(2.0).link(A, B)
    assert link is not None
    assert link.rtt_s == pytest.approx(0.014 + 0.2 * 0.016)


def test_latency_ewma_takes_one_sample_per_request() -> None:
    m = Monitor(MonitorConfig(latency_alpha=0.5), [A])
    m.ingest(report("a", 0, requests=(request((0.1, 0.3), ttft=1.0),)), now=0.0)
    m.ingest(report("a", 1, requests=(request((0.4,) * 10, ttft=2.0),)), now=1.0)
    env = m.snapshot(1.0)
    assert env.latency_ewma_s == pytest.approx(0.3)  # 0.2 then halfway to 0.4
    assert env.ttft_ewma_s == pytest.approx(1.5)


# -- liveness ----------------------------------------------------------------


def test_dead_after_missed_cycles_and_alive_when_reports_resume() -> None:
    m = Monitor(MonitorConfig(report_interval_s=1.0, missed_cycles=3), [A, B])
    m.ingest(report("a", 0), now=10.0)
    m.ingest(report("b", 0), now=10.0)
    for t in (11.0, 12.0, 13.0):
        m.ingest(report("b", int(t)), now=t)
    assert m.snapshot(13.0).nodes[A].alive  # three reports late is the last chance
    env = m.snapshot(13.01)
    assert not env.nodes[A].alive and env.nodes[B].alive
    assert not env.is_alive(A)
    m.ingest(report("a", 1), now=20.0)
    assert m.snapshot(20.0).nodes[A].alive


def test_missed_cycles_is_configurable() -> None:
    m = Monitor(MonitorConfig(report_interval_s=2.0, missed_cycles=5), [A])
    m.ingest(report("a", 0), now=0.0)
    assert m.snapshot(10.0).nodes[A].alive
    assert not m.snapshot(10.5).nodes[A].alive


def test_enrolled_node_that_never_reports_dies_after_the_same_grace() -> None:
    m = Monitor(MonitorConfig(), [A], now=5.0)
    assert m.snapshot(8.0).nodes[A].alive
    node = m.snapshot(8.5).nodes[A]
    assert not node.alive and node.reports == 0 and node.last_seen is None


# -- enrolment and bad reports ------------------------------------------------


def test_unknown_node_is_refused_with_a_typed_error_and_counted() -> None:
    m = Monitor(MonitorConfig(), [A])
    for seq in range(2):
        with pytest.raises(ReportRefused) as info:
            m.ingest(report("intruder", seq), now=0.0)
        assert info.value.reason is RefuseReason.NOT_ENROLLED
    assert refused(m, 0.0) == {"not_enrolled": 2, "malformed": 0}
    assert NodeId("intruder") not in m.snapshot(0.0).nodes


def test_unenrolled_node_is_refused_and_enrolled_one_accepted() -> None:
    m = Monitor(MonitorConfig(), [A])
    m.enroll(B, now=0.0)
    m.unenroll(A)
    assert m.ingest(report("b", 0), now=0.0) is IngestOutcome.ACCEPTED
    with pytest.raises(ReportRefused):
        m.ingest(report("a", 0), now=0.0)
    assert m.enrolled == frozenset({B})


@pytest.mark.parametrize(
    "bad",
    [
        report("a", 0, cpu=float("nan")),
        report("a", 0, cpu=1.5),
        report("a", 0, decode=((0, -0.1),)),
        report("a", 0, decode=((-5, 0.1),)),
        report("a", 0, links=(("b", float("inf"), None),)),
        report("a", 0, requests=(request((0.1, float("nan"))),)),
    ],
)
def test_malformed_report_is_refused_and_changes_nothing(bad: object) -> None:
    m = Monitor(MonitorConfig(), [A])
    with pytest.raises(ReportRefused) as info:
        m.ingest(bad, now=0.0)  # type: ignore[arg-type]
    assert info.value.reason is RefuseReason.MALFORMED
    env = m.snapshot(0.0)
    assert env.nodes[A].reports == 0 and env.requests_total == 0
    assert dict(env.reports_refused)["malformed"] == 1


def test_stale_and_reordered_reports_are_ignored_and_counted() -> None:
    m = Monitor(MonitorConfig(alpha=1.0), [A])
    assert m.ingest(report("a", 5, cpu=0.5), now=0.0) is IngestOutcome.ACCEPTED
    assert m.ingest(report("a", 5, cpu=0.9), now=1.0) is IngestOutcome.STALE  # retry
    assert m.ingest(report("a", 3, cpu=0.9), now=1.0) is IngestOutcome.STALE  # reordered
    env = m.snapshot(1.0)
    assert env.reports_stale == 2 and env.reports_accepted == 1
    assert env.nodes[A].cpu_utilization == 0.5 and env.nodes[A].last_seen == 0.0


def test_restarted_agent_is_accepted_under_a_new_incarnation() -> None:
    m = Monitor(MonitorConfig(alpha=1.0), [A])
    m.ingest(report("a", 40, cpu=0.5), now=0.0)
    assert m.ingest(report("a", 0, cpu=0.7, incarnation=1), now=1.0) is IngestOutcome.ACCEPTED
    assert m.snapshot(1.0).nodes[A].cpu_utilization == 0.7


# -- SLA window ----------------------------------------------------------------


def test_sla_hit_rate_over_a_time_window() -> None:
    m = Monitor(MonitorConfig(sla_window_s=60.0), [A])
    m.ingest(report("a", 0, requests=(request((0.1,), False),)), now=0.0)
    m.ingest(report("a", 1, requests=(request((0.1,), True),)), now=30.0)
    assert m.snapshot(30.0).sla_hit_rate == pytest.approx(0.5)
    env = m.snapshot(70.0)  # the miss at t=0 has left the window
    assert env.sla_hit_rate == 1.0 and env.sla_window_requests == 1
    env = m.snapshot(100.0)
    assert env.sla_hit_rate is None
    assert env.requests_total == 2 and env.sla_hits_total == 1


def test_sla_hit_rate_over_the_last_n_requests() -> None:
    m = Monitor(MonitorConfig(sla_window_s=None, sla_window_requests=3), [A])
    verdicts = (False, False, True, True, True)
    reqs = tuple(request((0.1,), v) for v in verdicts)
    m.ingest(report("a", 0, requests=reqs), now=0.0)
    assert m.snapshot(1e6).sla_hit_rate == 1.0  # only the last three count, at any age


def test_monitor_judges_requests_without_a_verdict_by_its_step_budget() -> None:
    m = Monitor(MonitorConfig(sla_step_budget_s=0.4), [A])
    reqs = (
        request((0.1, 0.39)),  # every step within budget: hit
        request((0.1, 0.41)),  # one stalled step: miss
        request((0.9,), sla_met=True),  # the agent's verdict wins
    )
    m.ingest(report("a", 0, requests=reqs), now=0.0)
    assert m.snapshot(0.0).sla_hit_rate == pytest.approx(2 / 3)


# -- snapshots and the planner's view -----------------------------------------


def test_snapshot_shares_unchanged_nodes_and_stays_frozen() -> None:
    m = Monitor(MonitorConfig(alpha=1.0), [A, B])
    m.ingest(report("a", 0, cpu=0.1), now=0.0)
    m.ingest(report("b", 0, cpu=0.1), now=0.0)
    first = m.snapshot(0.0)
    m.ingest(report("a", 1, cpu=0.9), now=1.0)
    second = m.snapshot(1.0)
    assert second.nodes[B] is first.nodes[B]  # B did not report: same object
    assert first.nodes[A].cpu_utilization == 0.1  # the earlier snapshot did not move
    assert second.nodes[A].cpu_utilization == 0.9


def _inventory() -> NodeInventory:
    return NodeInventory(
        (
            NodeState(
                A, Trust.TRUSTED, 8 << 30, 1e12, layer_seconds=((0, 0.5), (1, 0.5)), address="a:1"
            ),
            NodeState(B, Trust.UNTRUSTED, 4 << 30, 2e12, address="b:1"),
            NodeState(C, Trust.TRUSTED, 2 << 30, 1e11, address="c:1"),
        )
    )


def test_to_cluster_state_overlays_measurements_on_the_inventory() -> None:
    m = Monitor(MonitorConfig(alpha=1.0, layer_alpha=1.0, link_alpha=1.0), [A, B, C], now=0.0)
    m.ingest(report("a", 0, decode=((1, 0.002),), links=(("b", 0.01, 80e6), ("x", 0.1, 1e6))), 5.0)
    m.ingest(report("b", 0, cpu=0.4, busy_s=0.1, links=(("a", None, 90e6),)), now=5.0)
    cluster = m.snapshot(5.0).to_cluster_state(_inventory())
    a, b, c = cluster.nodes
    assert [n.node_id for n in cluster.nodes] == [A, B, C]
    assert (a.trust, a.memory_bytes, a.flops_per_s, a.address) == (
        Trust.TRUSTED,
        8 << 30,
        1e12,
        "a:1",
    )
    # Measured layer 1 replaces its estimate; layer 0 keeps the configured one.
    assert a.layer_seconds == ((0, 0.5), (1, 0.002))
    assert b.utilization == pytest.approx(0.3)  # 0.4 measured minus 0.1 of our own work
    assert not c.alive  # enrolled, silent past the grace period
    # Only fully observed links between inventory nodes reach the planner.
    assert [(lk.src, lk.dst, lk.bandwidth_bps) for lk in cluster.links] == [(A, B, 80e6)]


def test_measured_layer_time_wins_in_the_cost_model() -> None:
    m = Monitor(MonitorConfig(), [B])
    m.ingest(report("b", 0, decode=((0, 0.004),)), now=0.0)
    node = m.snapshot(0.0).to_cluster_state(_inventory()).node(B)
    profile = ModelProfile(
        "m", (LayerCost(1, 1e9), LayerCost(1, 1e9)), LayerCost(1, 0), LayerCost(1, 0), 16
    )
    layers, _, _ = layer_times(node, profile)
    assert layers[0] == 0.004  # measured
    assert layers[1] == pytest.approx(1e9 / 2e12 / 0.8)  # estimated: flops / free speed


def test_measured_profile_calibrates_flops_from_node_speed() -> None:
    m = Monitor(MonitorConfig(), [A, B], now=0.0)
    m.ingest(report("a", 0, cpu=0.0, decode=((0, 0.002),)), now=0.0)
    m.ingest(report("b", 0, cpu=0.0, decode=((0, 0.002),)), now=0.0)
    profile = ModelProfile(
        "m", (LayerCost(1, 5e9), LayerCost(1, 7e9)), LayerCost(1, 0), LayerCost(1, 0), 16
    )
    out = m.snapshot(0.0).measured_profile(profile, _inventory())
    assert out.layers[0].flops_per_token == pytest.approx(2e9)  # the smaller of 2e9 and 4e9
    assert out.layers[1] == profile.layers[1]  # unmeasured: estimate kept


def test_one_slow_node_does_not_recalibrate_a_layer_for_all() -> None:
    m = Monitor(MonitorConfig(), [A, B], now=0.0)
    m.ingest(report("b", 0, cpu=0.0, decode=((0, 0.5),)), now=0.0)  # far slower than declared
    profile = ModelProfile(
        "m", (LayerCost(1, 5e9), LayerCost(1, 7e9)), LayerCost(1, 0), LayerCost(1, 0), 16
    )
    out = m.snapshot(0.0).measured_profile(profile, _inventory())
    assert out.layers == profile.layers


def test_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        MonitorConfig(sla_window_s=None, sla_window_requests=None)
    with pytest.raises(ValueError):
        MonitorConfig(missed_cycles=0)
    with pytest.raises(ValueError):
        MonitorConfig(alpha=0.0)


def test_a_lost_stream_makes_a_node_dead_after_one_cycle_not_missed_cycles() -> None:
    m = Monitor(MonitorConfig(report_interval_s=1.0, missed_cycles=3), [A, B], now=0.0)
    m.ingest(report("a", 0), now=10.0)
    m.ingest(report("b", 0), now=10.0)
    m.stream_lost(A, now=10.2)  # a's process died, or its connection broke
    assert m.snapshot(11.2).nodes[A].alive  # within one cycle of the loss
    assert not m.snapshot(11.21).nodes[A].alive  # not 13.0, as silence alone would be
    assert m.snapshot(11.21).nodes[B].alive
    m.ingest(report("a", 1), now=11.5)  # it came back (restarted, or reconnected)
    assert m.snapshot(12.0).nodes[A].alive
    m.stream_lost(B, now=12.0)
    m.ingest(report("b", 1), now=12.3)  # only the stream was renewed: never dead
    assert m.snapshot(13.5).nodes[B].alive
    assert not m.snapshot(15.31).nodes[B].alive  # silence alone still counts
