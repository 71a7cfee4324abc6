"""Link RTT and bandwidth from timed messages (services/node_agent/links.py)."""

from __future__ import annotations

import math

import pytest

from edgesplit.core.reports import LinkSource
from services.node_agent.links import LinkStats, LinkTiming

P, Q = LinkSource.PASSIVE, LinkSource.PROBE


def rt(nbytes: int, rtt: float = 0.05, bps: float = 8e6) -> float:
    """What an ideal link takes for one message: latency plus transfer."""
    return rtt + nbytes * 8 / bps


def test_small_frames_give_rtt_only() -> None:
    s = LinkStats()
    for _ in range(3):
        s.observe("b", 300, rt(300), P, now=1.0)
    (obs,) = s.take()
    assert obs.peer == "b" and obs.source is P and obs.bandwidth_bps is None
    assert obs.rtt_s == pytest.approx(rt(300))
    assert s.take() == ()  # a new cycle starts empty


def test_large_frame_bandwidth_from_the_difference_to_small_ones() -> None:
    s = LinkStats()
    s.observe("b", 300, rt(300), P, now=1.0)
    s.observe("b", 1_000_000, rt(1_000_000), P, now=1.1)
    (obs,) = s.take()
    assert obs.bandwidth_bps == pytest.approx(8e6, rel=1e-3)
    # Once the bandwidth is known, a large frame's RTT has its transfer taken out.
    s.observe("b", 1_000_000, rt(1_000_000), P, now=1.2)
    (obs,) = s.take()
    assert obs.rtt_s == pytest.approx(0.05, rel=1e-3)


def test_large_frame_lost_in_noise_gives_no_bandwidth() -> None:
    s = LinkStats(LinkTiming(min_transfer_s=1e-3, min_transfer_share=0.25))
    s.observe("b", 300, 0.05, P, now=1.0)
    s.observe("b", 20_000, 0.0505, P, now=1.1)  # 0.5 ms more: below both floors
    assert all(o.bandwidth_bps is None for o in s.take())


def test_probe_pair_and_lower_bound_on_fast_links() -> None:
    s = LinkStats()
    s.observe_pair("b", (60, rt(60)), (65_600, rt(65_600)), now=2.0)
    (obs,) = s.take()
    assert obs.source is Q and obs.bandwidth_bps == pytest.approx(8e6, rel=1e-3)
    assert obs.rtt_s == pytest.approx(0.05, rel=1e-3)
    # Loopback: the difference vanishes in timer noise -> "at least" 65 kB per ms.
    s.observe_pair("c", (60, 1e-4), (65_600, 1e-4), now=2.0)
    (obs,) = s.take()
    assert obs.bandwidth_bps == pytest.approx((65_600 - 60) * 8 / 1e-3)


def test_median_per_source_and_staleness() -> None:
    s = LinkStats()
    for t in (0.01, 0.50, 0.02):  # one outlier (a preempted sender) does not move it
        s.observe("b", 100, t, P, now=5.0)
    s.observe("b", 100, 0.03, Q, now=5.0)
    obs = {o.source: o for o in s.take()}
    assert obs[P].rtt_s == 0.02 and obs[Q].rtt_s == 0.03
    assert not s.needs_rtt_probe("b", now=5.5, idle_s=1.0)
    assert s.needs_rtt_probe("b", now=6.0, idle_s=1.0)
    assert s.needs_bandwidth_probe("b", now=5.0, idle_s=10.0)  # never had one
    assert s.needs_rtt_probe("new-peer", now=0.0, idle_s=1.0)


def test_bad_samples_are_ignored_and_old_peers_forgotten() -> None:
    s = LinkStats()
    s.observe("b", 100, math.nan, P, now=1.0)
    s.observe("b", 100, -1.0, P, now=1.0)
    s.observe_bandwidth("b", math.inf, P, now=1.0)
    assert s.take() == ()
    s.observe("c", 100, 0.01, P, now=1.0)
    s.forget({"b"})
    assert s.take() == ()
