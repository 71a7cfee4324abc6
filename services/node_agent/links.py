"""Link RTT and bandwidth from timed round trips, passive (frames) or active (probes).

Every sample is one message of ``nbytes`` sent to a peer and answered, timed
by the sender with the receiver's own handling time taken out (the ack says
how long it spent). So a sample is ``rtt + nbytes * 8 / bandwidth`` plus
noise, and two unknowns need two kinds of sample:

* small messages (decode frames, RTT probes) give the RTT, once the transfer
  term is taken out with the current bandwidth estimate (negligible for them);
* a large message gives the bandwidth from its time *minus* the small-message
  time on the same path, which cancels the latency, whatever it is made of.

Real frames are often all small (a decode step is one hidden vector), so a
frame size difference rarely tells the bandwidth: a link that yields no
bandwidth sample for a while gets a bulk probe (``needs_bandwidth_probe``).
Pure and single-threaded (the agent's event loop); ``now`` is passed in.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from edgesplit.core.ewma import ewma_step
from edgesplit.core.reports import LinkObservation, LinkSource
from edgesplit.core.types import NodeId


@dataclass(frozen=True, slots=True)
class LinkTiming:
    """When a timed message says something about bandwidth."""

    small_bytes: int = 16 * 1024  # up to this, a message's time is (almost) all RTT
    min_transfer_s: float = 1e-3  # below this the size difference is lost in timer noise
    min_transfer_share: float = 0.25  # ... or below this share of the message's time
    baseline_alpha: float = 0.3  # smoothing of the small-message time (the latency baseline)


@dataclass(slots=True)
class _Peer:
    bandwidth_bps: float | None = None  # latest estimate, to take transfer time out of RTTs
    bandwidth_at: float = -math.inf
    rtt_at: float = -math.inf
    small_s: float | None = None  # smoothed time of small messages on this path
    small_bytes: float = 0.0
    rtt: dict[LinkSource, list[float]] = field(default_factory=dict)  # this cycle's samples
    bandwidth: dict[LinkSource, list[float]] = field(default_factory=dict)


class LinkStats:
    """Per-peer samples of the current report cycle, plus what outlives a cycle."""

    def __init__(self, timing: LinkTiming | None = None) -> None:
        self.timing = timing or LinkTiming()
        self._peers: dict[NodeId, _Peer] = {}

    def _peer(self, peer: str) -> _Peer:
        p = self._peers.get(NodeId(peer))
        if p is None:
            p = self._peers[NodeId(peer)] = _Peer()
        return p

    def observe(self, peer: str, nbytes: int, seconds: float, source: LinkSource,
                now: float) -> None:
        """One message of ``nbytes`` answered after ``seconds`` (receiver's handling excluded)."""
        if not math.isfinite(seconds) or seconds < 0:
            return
        t, p = self.timing, self._peer(peer)
        small = nbytes <= t.small_bytes
        if small or p.bandwidth_bps:
            transfer = nbytes * 8.0 / p.bandwidth_bps if p.bandwidth_bps else 0.0
            p.rtt.setdefault(source, []).append(max(seconds - transfer, 0.0))
            p.rtt_at = now
        if small:
            p.small_s = ewma_step(p.small_s, seconds, t.baseline_alpha)
            p.small_bytes = ewma_step(p.small_bytes or None, float(nbytes), t.baseline_alpha)
            return
        if p.small_s is None:
            return  # no latency baseline on this path yet
        transfer = seconds - p.small_s
        if transfer >= max(t.min_transfer_s, t.min_transfer_share * seconds):
            self.observe_bandwidth(peer, (nbytes - p.small_bytes) * 8.0 / transfer, source, now)

    def observe_pair(self, peer: str, small: tuple[int, float], large: tuple[int, float],
                     now: float) -> None:
        """A probe pair sent back to back: RTT from the small one, bandwidth from the
        difference. A difference below the timer's resolution yields a lower bound
        (the link is at least that fast), not nothing: the planner needs a figure."""
        (n_s, t_s), (n_l, t_l) = small, large
        if n_l > n_s:  # first, so the RTT below has the small probe's own transfer taken out
            transfer = max(t_l - t_s, self.timing.min_transfer_s)
            self.observe_bandwidth(peer, (n_l - n_s) * 8.0 / transfer, LinkSource.PROBE, now)
        self.observe(peer, n_s, t_s, LinkSource.PROBE, now)

    def observe_bandwidth(self, peer: str, bps: float, source: LinkSource, now: float) -> None:
        if not math.isfinite(bps) or bps <= 0:
            return
        p = self._peer(peer)
        p.bandwidth.setdefault(source, []).append(bps)
        p.bandwidth_bps = bps
        p.bandwidth_at = now

    def needs_rtt_probe(self, peer: str, now: float, idle_s: float) -> bool:
        """No RTT sample (from frames or probes) for ``idle_s``."""
        return now - self._peer(peer).rtt_at >= idle_s

    def needs_bandwidth_probe(self, peer: str, now: float, idle_s: float) -> bool:
        """No bandwidth sample for ``idle_s``: the link was idle or its frames too small."""
        return now - self._peer(peer).bandwidth_at >= idle_s

    def take(self) -> tuple[LinkObservation, ...]:
        """This cycle's observations (the median per peer and source) and a fresh cycle."""
        out: list[LinkObservation] = []
        for peer, p in sorted(self._peers.items()):
            for source in LinkSource:
                rtt, bw = p.rtt.get(source), p.bandwidth.get(source)
                if rtt or bw:
                    out.append(LinkObservation(
                        peer, statistics.median(rtt) if rtt else None,
                        statistics.median(bw) if bw else None, source))
            p.rtt.clear()
            p.bandwidth.clear()
        return tuple(out)

    def forget(self, keep: set[str]) -> None:
        """Drop peers no longer talked to, so an old epoch's links are not probed forever."""
        for peer in [q for q in self._peers if q not in keep]:
            del self._peers[peer]
