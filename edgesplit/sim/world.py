"""Simulated time, nodes and links.

``Clock`` is the event queue: ``at(t, fn, *args)`` runs ``fn(*args)`` at
simulated time ``t``; ties run in scheduling order, so a run is a pure
function of its inputs and seed.

A ``SimNode`` is one machine running segments: work waits in a queue, and
whenever the device is free it takes every waiting decode step (up to
``max_batch``) plus prefill work up to ``prefill_chunk`` tokens and runs them
as one forward pass, priced by the roofline of its hardware class
(``hardware.HardwareClass.batch_seconds``), stretched by background load and
any emulated slow-down. A ``SimLink`` is a directed link that serialises one
frame at a time at its current bandwidth and delivers it half a round trip
later (docs/data-plane.md: one long-lived stream per link, acks not waiting).
"""

from __future__ import annotations

import heapq
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edgesplit.core.cost import MIN_FREE_FRACTION
from edgesplit.core.frozen import maker
from edgesplit.core.reports import LinkObservation, LinkSource
from edgesplit.core.types import LayerKey, ModelProfile, NodeId, Segment, Trust
from edgesplit.sim.hardware import HardwareClass
from edgesplit.sim.traces import Trace


class Clock:
    """A discrete-event queue over simulated seconds."""

    def __init__(self) -> None:
        self.now = 0.0
        self._queue: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = 0
        self.events = 0

    def at(self, t: float, fn: Callable[..., None], *args: Any) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (max(t, self.now), self._seq, fn, args))

    def run(self, until: float) -> None:
        q = self._queue
        while q and q[0][0] <= until:
            t, _, fn, args = heapq.heappop(q)
            self.now = t
            self.events += 1
            fn(*args)
        self.now = until


class LayerTable:
    """Prefix sums of a model's per-layer figures, so a segment costs O(1) to price."""

    def __init__(self, profile: ModelProfile) -> None:
        self.profile = profile
        flops, weights, kv = [0.0], [0.0], [0.0]
        for c in profile.layers:
            flops.append(flops[-1] + c.flops_per_token)
            weights.append(weights[-1] + c.weight_bytes)
            kv.append(kv[-1] + c.kv_bytes_per_token)
        self.flops, self.weights, self.kv = flops, weights, kv
        self.act_bytes = profile.activation_bytes_per_token
        # Keyed by identity: segments live in plans the run keeps, and hashing a
        # frozen dataclass per pass is measurable at a few hundred passes a second.
        self._cache: dict[int, tuple[float, float, float, int]] = {}
        self._keep: list[Segment] = []

    def segment(self, seg: Segment) -> tuple[float, float, float, int]:
        """(FLOPs per token, weight bytes, KV bytes per context token, layers)."""
        hit = self._cache.get(id(seg))
        if hit is None:
            self._keep.append(seg)  # the id stays unique while the table lives
            hit = self._cache[id(seg)] = self._segment(seg)
        return hit

    def _segment(self, seg: Segment) -> tuple[float, float, float, int]:
        a, b = seg.start, seg.end
        p = self.profile
        flops = self.flops[b] - self.flops[a]
        weights = self.weights[b] - self.weights[a]
        layers = b - a
        # embed is a gather (one row per token): no FLOPs, no table-sized read.
        if seg.has_head:
            flops += p.head.flops_per_token
            weights += p.head.weight_bytes
            layers += 1
        return flops, weights, self.kv[b] - self.kv[a], layers


@dataclass(slots=True, eq=False)
class Work:
    """One session's tokens waiting to run one segment of its route."""

    session: Any  # dataplane.Session
    hop: int  # index into the session's route segments
    tokens: int  # 1 for a decode step, the prompt (or history) for prefill
    context: int  # tokens already in the KV cache this pass attends over
    generation: int  # the session's replay count when queued: stale work is dropped

    @property
    def prefill(self) -> bool:
        return self.tokens > 1


@dataclass(slots=True, eq=False)
class SimNode:
    node_id: NodeId
    hw: HardwareClass
    trust: Trust
    memory_bytes: int
    max_batch: int = 32
    prefill_chunk: int = 512
    alive: bool = True
    slowdown: float = 1.0  # emulated: every pass takes this many times longer
    background: float = 0.0  # another tenant's share of the device
    # Whether that tenant takes device time from us. A test-bed node only
    # reports its emulated background load (its slow-down is separate).
    background_slows: bool = True
    queue: list[Work] = field(default_factory=list)
    running: bool = False
    incarnation: int = 0
    seq: int = 0
    # Cumulative (seconds, tokens) per (segment, prefill?): the agent's per-layer
    # counters (edgesplit.core.reports) are expanded from these once per report,
    # not once per pass.
    seg_counters: dict[tuple[int, bool], list[Any]] = field(default_factory=dict)
    bytes_sent: dict[NodeId, int] = field(default_factory=dict)
    busy_s: float = 0.0  # our passes, total
    busy_since_report: float = 0.0
    shards: set[int] = field(default_factory=set)  # layers whose weights are on disk here
    users: int = 0  # active sessions whose route runs through this node
    express: Any = None  # the session whose decode steps hold this node (dataplane)
    # Segment.keys (sorted anew on each call) per counted segment: the
    # segments stay alive in seg_counters, so their ids stay theirs.
    layer_keys: dict[int, tuple[LayerKey, ...]] = field(default_factory=dict)

    def pass_seconds(self, table: LayerTable, batch: list[Work], segs: list[Segment]) -> float:
        """One forward pass over ``batch`` (grouped by segment), and counter updates."""
        free = max(1.0 - self.background, MIN_FREE_FRACTION) if self.background_slows else 1.0
        counters = self.seg_counters
        if len(batch) == 1:  # most passes: the loop below with one item, spelled out
            w, seg = batch[0], segs[0]
            flops, weights, kv, layers = table.segment(seg)
            tokens = w.tokens
            seconds = self.hw.batch_seconds(flops * tokens, weights + kv * (w.context + tokens),
                                            layers)
            seconds *= self.slowdown / free
            ck = (id(seg), tokens > 1)
            c = counters.get(ck)
            if c is None:
                counters[ck] = [seconds, tokens, seg]
            else:
                c[0] += seconds
                c[1] += tokens
            return seconds
        groups: dict[int, tuple[Segment, list[Work]]] = {}
        for w, s in zip(batch, segs, strict=True):
            g = groups.get(id(s))
            if g is None:
                groups[id(s)] = (s, [w])
            else:
                g[1].append(w)
        total = 0.0
        for key, (seg, items) in groups.items():
            flops, weights, kv, layers = table.segment(seg)
            tokens = 0
            ctx = 0
            prefill = False
            for w in items:
                tokens += w.tokens
                ctx += w.context
                prefill = prefill or w.tokens > 1
            seconds = self.hw.batch_seconds(flops * tokens, weights + kv * (ctx + tokens), layers)
            seconds *= self.slowdown / free
            total += seconds
            c = counters.get((key, prefill))
            if c is None:
                counters[(key, prefill)] = [seconds, tokens, seg]
            else:
                c[0] += seconds
                c[1] += tokens
        return total

    def layer_counters(self) -> tuple[dict[LayerKey, tuple[float, int]],
                                      dict[LayerKey, tuple[float, int]]]:
        """(prefill, decode) cumulative ``layer -> (seconds, tokens)``, as an agent
        reports them: a segment's time shared evenly over its parts."""
        out: tuple[dict[LayerKey, list[float]], dict[LayerKey, list[float]]] = ({}, {})
        keys = self.layer_keys
        for (sid, prefill), (seconds, tokens, seg) in self.seg_counters.items():
            parts = keys.get(sid)
            if parts is None:
                parts = keys[sid] = seg.keys
            share = seconds / max(1, len(parts))
            table = out[0] if prefill else out[1]
            for layer in parts:
                c = table.get(layer)
                if c is None:
                    table[layer] = [share, tokens]  # 0.0 + share is share
                else:
                    c[0] += share
                    c[1] += tokens
        return ({k: (v[0], int(v[1])) for k, v in out[0].items()},
                {k: (v[0], int(v[1])) for k, v in out[1].items()})


@dataclass(slots=True, eq=False)
class SimLink:
    """Directed link ``src -> dst``: a trace or fixed figures, plus overrides from events."""

    src: NodeId
    dst: NodeId
    bandwidth_bps: float
    rtt_s: float
    trace: Trace | None = None
    trace_offset_s: float = 0.0
    scale: float = 1.0  # events may scale a traced link's bandwidth
    extra_rtt_s: float = 0.0  # added to a traced link's RTT
    free_at: float = 0.0
    # The trace row last read, (from, until, bit/s, RTT) on the trace's clock:
    # a link is read every frame and every probe, its trace changes every second.
    _row: tuple[float, float, float, float] = (0.0, -1.0, 0.0, 0.0)

    def _trace_row(self, tt: float) -> tuple[float, float, float, float]:
        row = self._row
        if not row[0] <= tt < row[1]:
            assert self.trace is not None
            row = self._row = self.trace.row(tt)
        return row

    def figures(self, t: float) -> tuple[float, float]:
        """(bandwidth bit/s, RTT s) now."""
        if self.trace is None:
            return self.bandwidth_bps, self.rtt_s
        row = self._trace_row(t + self.trace_offset_s)
        return row[2] * self.scale, row[3] + self.extra_rtt_s

    def send(self, now: float, nbytes: int) -> float:
        """Arrival time at ``dst`` of a frame of ``nbytes`` handed over at ``now``."""
        free = self.free_at
        start = max(now, free)
        trace = self.trace
        if trace is None:
            bw, rtt = self.bandwidth_bps, self.rtt_s
        else:  # figures(start), inlined: every frame and every express step sends
            tt = start + self.trace_offset_s
            row = self._row
            if not row[0] <= tt < row[1]:
                row = self._row = trace.row(tt)
            if row[2] <= 0:  # an outage: wait for the link to come back
                start = trace.usable_from(tt) - self.trace_offset_s
                row = self._trace_row(start + self.trace_offset_s)
            bw, rtt = row[2] * self.scale, row[3] + self.extra_rtt_s
        self.free_at = start + nbytes * 8.0 / max(bw, 1.0)
        return self.free_at + rtt / 2.0

Peer = tuple[NodeId, SimLink, SimNode]  # a link from a node: (peer, link, peer's node)

# Probes make a LinkObservation per link of every report (edgesplit.core.frozen).
_observation = maker(LinkObservation)


def probe(peers: list[Peer], now: float, rand: Callable[[], float]
          ) -> tuple[LinkObservation, ...]:
    """What one report's probes to ``peers`` see at ``now``: each link's figures
    with a +-1 % RTT jitter drawn from ``rand``; RTT only in an outage; nothing
    from a dead peer. ``SimLink.figures`` inlined: this runs for every link of
    every report, the bulk of a large run's reports."""
    out = []
    append = out.append
    source = LinkSource.PROBE
    for peer, link, node in peers:
        if not node.alive:
            continue
        trace = link.trace
        if trace is None:
            bw, rtt = link.bandwidth_bps, link.rtt_s
        else:
            # Trace.at, inlined; not through the link's cached row: a probe comes
            # a report cycle after the last, rows last a second.
            i = bisect_right(trace.times, (now + link.trace_offset_s) % trace.period_s) - 1
            bw = trace.bandwidth_bps[i] * link.scale
            rtt = trace.rtt_s[i] + link.extra_rtt_s
        jitter = 1.0 + 0.02 * (rand() - 0.5)
        append(_observation(peer, rtt * jitter, bw if bw > 0 else None, source))
    return tuple(out)
