"""What a node agent reports to the monitor every cycle, and how it builds it.

The agent keeps cumulative counters (seconds and tokens per layer, bytes sent
per next hop) because cumulative counters survive a lost report: the next
report's delta simply covers two cycles. ``build_report`` turns two snapshots
of those counters into one report of per-cycle figures. It is pure, so the
agent, the simulator and the monitor benchmark all run the same code.

Units: seconds, bytes, bits per second; utilisations are fractions in [0, 1].
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from edgesplit.core.frozen import maker
from edgesplit.core.types import LayerKey, NodeId, is_layer_key

# Layer tables use the cost model's keys: 0.. for decoder layers, Part.EMBED
# and Part.HEAD for the named parts the entry node runs.

# The scenario spec's SLA: every decode step of a request within 400 ms.
DEFAULT_SLA_STEP_BUDGET_S = 0.4


class LinkSource(enum.Enum):
    """How a link figure was obtained."""

    PASSIVE = "passive"  # timed from real activation frames; bandwidth is a lower bound
    PROBE = "probe"  # an explicit ping / bulk probe


@dataclass(frozen=True, slots=True)
class GpuSample:
    """One GPU's utilisation and memory (absent on CPU-only nodes)."""

    utilization: float
    memory_used_bytes: int
    memory_total_bytes: int


@dataclass(frozen=True, slots=True)
class ResourceSample:
    """Instantaneous machine figures the agent reads each cycle (psutil / NVML)."""

    cpu_utilization: float
    memory_used_bytes: int
    memory_total_bytes: int
    gpu: GpuSample | None = None
    queue_depth: int = 0  # frames waiting for the segment runner
    active_sessions: int = 0  # sessions holding a KV cache here


@dataclass(frozen=True, slots=True)
class LinkObservation:
    """What this node saw of its link to ``peer`` (directed: this node -> peer).

    Either figure may be missing: an RTT ping carries no bandwidth, and a
    passive throughput sample carries no RTT.
    """

    peer: NodeId
    rtt_s: float | None
    bandwidth_bps: float | None
    source: LinkSource = LinkSource.PASSIVE


@dataclass(frozen=True, slots=True)
class RequestSample:
    """One request that finished on this (entry) node since the last report.

    ``sla_met`` is the agent's verdict; ``None`` leaves it to the monitor's budget.
    """

    ttft_s: float
    step_latencies_s: tuple[float, ...]  # decode steps, seconds each
    sla_met: bool | None = None

    @property
    def mean_step_s(self) -> float | None:
        if not self.step_latencies_s:
            return None
        return sum(self.step_latencies_s) / len(self.step_latencies_s)


@dataclass(frozen=True, slots=True)
class NodeReport:
    """One cycle's report from one node agent.

    ``(incarnation, seq)`` orders reports of one node: ``seq`` grows by one per
    report and ``incarnation`` grows when the agent restarts (so a restarted
    agent's ``seq = 0`` is not mistaken for a replay). ``now`` is the agent's
    own clock: used only for intervals between its own reports, never compared
    with the monitor's clock, because the two are not synchronised.
    ``prefill_layer_s`` / ``decode_layer_s`` are ``(layer key, seconds per
    token)`` for layers that ran tokens this cycle, as measured by the segment
    runner (``Part.EMBED`` / ``Part.HEAD`` for embed and head);
    ``activation_bytes`` are ``(next hop, bytes sent this cycle)``.
    """

    node_id: NodeId
    seq: int
    now: float
    resources: ResourceSample
    prefill_layer_s: tuple[tuple[LayerKey, float], ...] = ()
    decode_layer_s: tuple[tuple[LayerKey, float], ...] = ()
    activation_bytes: tuple[tuple[NodeId, int], ...] = ()
    compute_busy_s: float = 0.0  # wall seconds spent in segment compute this cycle
    requests: tuple[RequestSample, ...] = ()
    links: tuple[LinkObservation, ...] = ()
    incarnation: int = 0

    def problem(self) -> str | None:
        """Why the report is malformed, or ``None``; O(report size)."""
        r = self.resources
        if self.seq < 0 or self.incarnation < 0 or not math.isfinite(self.now):
            return "bad seq, incarnation or timestamp"
        if not _fraction(r.cpu_utilization):
            return f"cpu utilisation {r.cpu_utilization!r} outside [0, 1]"
        if min(r.memory_used_bytes, r.memory_total_bytes, r.queue_depth, r.active_sessions) < 0:
            return "negative memory, queue depth or session count"
        if r.gpu is not None and (
            not _fraction(r.gpu.utilization)
            or min(r.gpu.memory_used_bytes, r.gpu.memory_total_bytes) < 0
        ):
            return "bad GPU sample"
        for table in (self.prefill_layer_s, self.decode_layer_s):
            if table:
                layers, seconds = zip(*table, strict=True)
                if not all(map(is_layer_key, layers)) or not _all_non_negative(seconds):
                    return "bad layer index or layer time"
        if self.activation_bytes and min(n for _, n in self.activation_bytes) < 0:
            return "negative byte count"
        if not _non_negative(self.compute_busy_s):
            return "bad busy time"
        for req in self.requests:
            if not _non_negative(req.ttft_s) or not _all_non_negative(req.step_latencies_s):
                return "bad request latency"
        for obs in self.links:
            # Inlined _non_negative (every peer of every report): NaN fails both
            # comparisons, inf fails the first.
            rtt, bw = obs.rtt_s, obs.bandwidth_bps
            if (rtt is not None and not 0.0 <= rtt < math.inf) or (
                bw is not None and not 0.0 <= bw < math.inf
            ):
                return f"bad link observation to {obs.peer}"
        return None


def _fraction(x: float) -> bool:
    return math.isfinite(x) and 0.0 <= x <= 1.0


def _non_negative(x: float) -> bool:
    return math.isfinite(x) and x >= 0.0


def _all_non_negative(xs: Sequence[float]) -> bool:
    """All finite and >= 0, in two C-level passes: a NaN or inf makes the sum non-finite."""
    return not xs or (min(xs) >= 0.0 and math.isfinite(sum(xs)))


def judge_sla(step_latencies_s: Sequence[float], budget_s: float) -> bool:
    """A request meets a per-step SLA when every decode step is within budget.

    Every step, not the mean: a streaming user sees one slow step as a stall,
    which a mean would hide behind many fast ones.
    """
    return all(s <= budget_s for s in step_latencies_s)


@dataclass(frozen=True, slots=True)
class AgentCounters:
    """Cumulative counters a node agent keeps since it started.

    The agent hands ``build_report`` a copy each cycle (plain dict copies: a
    few dozen entries) and keeps it as the ``previous`` of the next cycle.
    """

    prefill: Mapping[LayerKey, tuple[float, int]] = field(default_factory=dict)  # -> (s, tokens)
    decode: Mapping[LayerKey, tuple[float, int]] = field(default_factory=dict)
    bytes_sent: Mapping[NodeId, int] = field(default_factory=dict)  # next hop -> bytes


_NO_COUNTERS = AgentCounters()
# Every agent builds one per cycle (a simulated thousand-node hour: 750 000).
_node_report = maker(NodeReport)


def build_report(
    node_id: NodeId,
    seq: int,
    now: float,
    resources: ResourceSample,
    current: AgentCounters,
    previous: AgentCounters | None = None,
    finished: Sequence[RequestSample] = (),
    links: Sequence[LinkObservation] = (),
    *,
    incarnation: int = 0,
    sla_step_budget_s: float = DEFAULT_SLA_STEP_BUDGET_S,
) -> NodeReport:
    """Build this cycle's report from two snapshots of the agent's counters.

    Per-layer time is (seconds delta) / (tokens delta) for layers that ran
    tokens since ``previous``; layers that ran none are left out, so the
    monitor keeps its last figure instead of reading an idle layer as free.
    Requests without a verdict are judged against ``sla_step_budget_s``.
    """
    prev = previous or _NO_COUNTERS
    prefill, busy_prefill = _per_token(current.prefill, prev.prefill)
    decode, busy_decode = _per_token(current.decode, prev.decode)
    sent = tuple(
        (peer, total - prev.bytes_sent.get(peer, 0))
        for peer, total in current.bytes_sent.items()
        # A counter that went backwards means the agent reset it: report nothing.
        if total >= prev.bytes_sent.get(peer, 0)
    )
    requests = tuple(
        r
        if r.sla_met is not None
        else RequestSample(
            r.ttft_s, r.step_latencies_s, judge_sla(r.step_latencies_s, sla_step_budget_s)
        )
        for r in finished
    )
    return _node_report(
        node_id=node_id,
        seq=seq,
        now=now,
        resources=resources,
        prefill_layer_s=prefill,
        decode_layer_s=decode,
        activation_bytes=sent,
        compute_busy_s=busy_prefill + busy_decode,
        requests=requests,
        links=tuple(links),
        incarnation=incarnation,
    )


def _per_token(
    cur: Mapping[LayerKey, tuple[float, int]], prev: Mapping[LayerKey, tuple[float, int]]
) -> tuple[tuple[tuple[LayerKey, float], ...], float]:
    """``((layer, seconds per token), ...)`` over layers with new tokens, and busy seconds."""
    out: list[tuple[LayerKey, float]] = []
    busy = 0.0
    for layer, (seconds, tokens) in sorted(cur.items()):
        p_seconds, p_tokens = prev.get(layer, (0.0, 0))
        d_tokens = tokens - p_tokens
        d_seconds = seconds - p_seconds
        if d_tokens > 0 and d_seconds >= 0.0:
            out.append((layer, d_seconds / d_tokens))
            busy += d_seconds
    return tuple(out), busy
