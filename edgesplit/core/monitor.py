"""The monitor's reducer: node reports in, E(t) out.

``Monitor.ingest`` folds one report in O(report size) and rebuilds only the
reporting node's frozen ``NodeEnv``; ``Monitor.snapshot`` then assembles E(t)
from those shared per-node values in O(nodes), with no per-layer or per-link
work. That split is what lets one monitor keep up with a thousand nodes at
1 Hz (``edgesplit bench monitor``).

Time is the monitor's own ``now``, passed in by the caller; the agents'
clocks are only used for intervals between one agent's own reports.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from edgesplit.core.environment import (
    NO_LAYER_TIMES,
    EnvironmentState,
    LayerTimes,
    LinkEnv,
    NodeEnv,
    background_load,
)
from edgesplit.core.ewma import check_alpha, ewma_step
from edgesplit.core.frozen import maker
from edgesplit.core.reports import DEFAULT_SLA_STEP_BUDGET_S, NodeReport, judge_sla
from edgesplit.core.types import LayerKey, NodeId
from edgesplit.errors import Code, DomainError

# One LinkEnv per link of every report, one NodeEnv per report: built without
# their dataclass __init__ (edgesplit.core.frozen), the same frozen values.
_link_env = maker(LinkEnv)
_node_env = maker(NodeEnv)


@dataclass(frozen=True, slots=True)
class MonitorConfig:
    """How reports are smoothed and judged. Alphas weigh the newest sample."""

    report_interval_s: float = 1.0  # the agents' report cycle
    missed_cycles: int = 3  # dead after this many cycles without a report
    alpha: float = 0.3  # resource figures: utilisation, memory, queue, sessions, load
    layer_alpha: float = 0.3  # per-layer compute times
    link_alpha: float = 0.3  # link RTT and bandwidth
    latency_alpha: float = 0.2  # end-to-end latency and TTFT, one sample per request
    sla_step_budget_s: float = DEFAULT_SLA_STEP_BUDGET_S  # for requests the agent did not judge
    sla_window_s: float | None = 60.0  # hit rate over requests of the last W seconds ...
    sla_window_requests: int | None = None  # ... and/or the last N requests

    def __post_init__(self) -> None:
        for a in (self.alpha, self.layer_alpha, self.link_alpha, self.latency_alpha):
            check_alpha(a)
        if self.report_interval_s <= 0 or self.missed_cycles < 1:
            raise ValueError("report_interval_s must be > 0 and missed_cycles >= 1")
        if self.sla_window_s is None and self.sla_window_requests is None:
            raise ValueError("set sla_window_s, sla_window_requests or both")
        if (self.sla_window_s is not None and self.sla_window_s <= 0) or (
            self.sla_window_requests is not None and self.sla_window_requests < 1
        ):
            raise ValueError("SLA window must be positive")

    @property
    def dead_after_s(self) -> float:
        """Silence after which a node is dead: its last ``missed_cycles`` reports are missing."""
        return self.missed_cycles * self.report_interval_s


class RefuseReason(enum.Enum):
    NOT_ENROLLED = "not_enrolled"
    MALFORMED = "malformed"


class ReportRefused(DomainError):
    """A report the monitor will not fold in; the service maps it to a status code."""

    def __init__(self, node_id: NodeId, reason: RefuseReason, detail: str = "") -> None:
        super().__init__(
            f"report from {node_id!r} refused ({reason.value}){': ' + detail if detail else ''}"
        )
        self.node_id = node_id
        self.reason = reason
        self.detail = detail
        self.code = (Code.PERMISSION_DENIED if reason is RefuseReason.NOT_ENROLLED
                     else Code.INVALID_ARGUMENT)


class IngestOutcome(enum.Enum):
    ACCEPTED = "accepted"
    STALE = "stale"  # (incarnation, seq) not newer than the last accepted: ignored


@dataclass(slots=True, eq=False)
class _LayerAcc:
    """Running per-layer EWMAs of one node and one phase, with their frozen view.

    ``values[index[layer]]`` is the average of ``layer``; ``view`` shares its
    layer tuple across reports until a layer appears for the first time.
    """

    index: dict[LayerKey, int] = field(default_factory=dict)
    values: list[float] = field(default_factory=list)
    view: LayerTimes = NO_LAYER_TIMES

    def fold(self, samples: tuple[tuple[LayerKey, float], ...], alpha: float) -> None:
        if not samples:
            return  # nothing ran: keep the view (and the last known figures)
        index, values = self.index, self.values
        new: list[tuple[LayerKey, float]] = []
        for layer, seconds in samples:
            i = index.get(layer)
            if i is None:
                new.append((layer, seconds))
            else:
                values[i] += alpha * (seconds - values[i])
        if not new:
            self.view = LayerTimes(self.view.layers, tuple(values))
            return
        # Rare (a node's first samples of a layer): rebuild the layer order once.
        table = dict(zip(self.view.layers, values, strict=True))
        for layer, seconds in new:
            table[layer] = ewma_step(table.get(layer), seconds, alpha)
        layers = tuple(sorted(table))
        self.values = [table[layer] for layer in layers]
        self.index = {layer: i for i, layer in enumerate(layers)}
        self.view = LayerTimes(layers, tuple(self.values))


@dataclass(slots=True, eq=False)
class _NodeAcc:
    """Mutable running figures of one node, owned by the monitor.

    ``view`` is the frozen ``NodeEnv`` snapshots hand out; it is replaced, never
    mutated, so earlier snapshots stay valid. ``None`` means no sample yet.
    """

    node_id: NodeId
    # Liveness counts from enrolment until the first report, so a node that
    # enrolled but never reported goes dead after the same grace period.
    heard_at: float
    lost_at: float | None = None  # when its report stream ended (``stream_lost``)
    key: tuple[int, int] = (-1, -1)  # (incarnation, seq) last accepted
    agent_now: float | None = None
    reports: int = 0
    cpu: float | None = None
    mem_used: float | None = None
    mem_total: int = 0
    gpu: float | None = None
    gpu_mem_used: float | None = None
    gpu_mem_total: int | None = None
    queue: float | None = None
    sessions: float | None = None
    own_load: float | None = None
    prefill: _LayerAcc = field(default_factory=_LayerAcc)
    decode: _LayerAcc = field(default_factory=_LayerAcc)
    decode_background: float | None = None  # background while decode times were measured
    hop_bps: dict[NodeId, float] = field(default_factory=dict)
    links: dict[NodeId, LinkEnv] = field(default_factory=dict)
    view: NodeEnv = field(init=False)

    def __post_init__(self) -> None:
        self.view = NodeEnv(node_id=self.node_id, alive=True, last_seen=None)


class Monitor:
    """Folds node reports into E(t). Not thread-safe: the owning service serialises calls."""

    def __init__(
        self, config: MonitorConfig | None = None, enrolled: Iterable[NodeId] = (), now: float = 0.0
    ) -> None:
        self.config = config or MonitorConfig()
        self._nodes: dict[NodeId, _NodeAcc] = {}
        for node_id in enrolled:
            self.enroll(node_id, now)
        self._accepted = 0
        self._stale = 0
        self._refused = dict.fromkeys(RefuseReason, 0)
        self._latency: float | None = None
        self._ttft: float | None = None
        self._window: deque[tuple[float, bool]] = deque()  # (monitor time, hit)
        self._window_hits = 0
        self._requests = 0
        self._hits = 0

    # -- enrolment ---------------------------------------------------------
    def enroll(self, node_id: NodeId, now: float) -> None:
        """Accept reports from ``node_id`` from now on; re-enrolling keeps its state."""
        if node_id not in self._nodes:
            self._nodes[node_id] = _NodeAcc(node_id, now)

    def unenroll(self, node_id: NodeId) -> None:
        """Forget ``node_id``; its later reports are refused."""
        self._nodes.pop(node_id, None)

    def stream_lost(self, node_id: NodeId, now: float) -> None:
        """The node's report stream ended (its process died, or its connection
        broke): the node is dead once one report cycle passes with no report
        after ``now``, not ``missed_cycles`` of them. An agent that merely
        reconnects reports again at once, within the cycle. A node killed
        mid-request is then failed over about a second sooner, which is what
        its in-flight requests wait for."""
        acc = self._nodes.get(node_id)
        if acc is not None:
            acc.lost_at = now

    @property
    def enrolled(self) -> frozenset[NodeId]:
        return frozenset(self._nodes)

    # -- ingest --------------------------------------------------------------
    def ingest(self, report: NodeReport, now: float) -> IngestOutcome:
        """Fold one report in; ``ReportRefused`` for an unenrolled node or a malformed report."""
        acc = self._nodes.get(report.node_id)
        if acc is None:
            self._refused[RefuseReason.NOT_ENROLLED] += 1
            raise ReportRefused(report.node_id, RefuseReason.NOT_ENROLLED)
        key = (report.incarnation, report.seq)
        if key <= acc.key:
            # Retried or reordered delivery: the newer report already counted.
            self._stale += 1
            return IngestOutcome.STALE
        problem = report.problem()
        if problem is not None:
            self._refused[RefuseReason.MALFORMED] += 1
            raise ReportRefused(report.node_id, RefuseReason.MALFORMED, problem)
        same_run = key[0] == acc.key[0]
        self._accepted += 1
        self._fold_node(acc, report, now, same_run)
        self._fold_requests(report, now)
        acc.key = key
        acc.heard_at = now
        acc.agent_now = report.now
        acc.reports += 1
        acc.view = self._build_view(acc, report, now)
        return IngestOutcome.ACCEPTED

    def _fold_node(self, acc: _NodeAcc, report: NodeReport, now: float, same_run: bool) -> None:
        cfg = self.config
        a = cfg.alpha
        r = report.resources
        # Rates need the agent's own interval; after a restart or on the first
        # report there is none, so assume one nominal cycle.
        dt = cfg.report_interval_s
        if same_run and acc.agent_now is not None and report.now > acc.agent_now:
            dt = report.now - acc.agent_now
        acc.cpu = ewma_step(acc.cpu, r.cpu_utilization, a)
        acc.mem_used = ewma_step(acc.mem_used, r.memory_used_bytes, a)
        acc.mem_total = r.memory_total_bytes  # a capacity, not a noisy reading: keep the latest
        if r.gpu is None:
            acc.gpu = acc.gpu_mem_used = acc.gpu_mem_total = None
        else:
            acc.gpu = ewma_step(acc.gpu, r.gpu.utilization, a)
            acc.gpu_mem_used = ewma_step(acc.gpu_mem_used, r.gpu.memory_used_bytes, a)
            acc.gpu_mem_total = r.gpu.memory_total_bytes
        acc.queue = ewma_step(acc.queue, r.queue_depth, a)
        acc.sessions = ewma_step(acc.sessions, r.active_sessions, a)
        acc.own_load = ewma_step(acc.own_load, min(1.0, report.compute_busy_s / dt), a)
        acc.prefill.fold(report.prefill_layer_s, cfg.layer_alpha)
        acc.decode.fold(report.decode_layer_s, cfg.layer_alpha)
        if report.decode_layer_s:
            busy = acc.cpu if acc.gpu is None else acc.gpu  # NodeEnv.compute_utilization
            acc.decode_background = ewma_step(
                acc.decode_background, background_load(busy or 0.0, acc.own_load),
                cfg.layer_alpha)
        hops = acc.hop_bps
        for peer, n in report.activation_bytes:
            hops[peer] = ewma_step(hops.get(peer), n / dt, a)
        la = cfg.link_alpha
        links, src = acc.links, acc.node_id
        # ewma_step inlined: this loop runs for every peer of every report.
        for obs in report.links:
            peer, rtt, bw = obs.peer, obs.rtt_s, obs.bandwidth_bps
            old = links.get(peer)
            if old is None:
                samples = 1
            else:
                o_rtt, o_bw = old.rtt_s, old.bandwidth_bps
                if rtt is None:
                    rtt = o_rtt
                elif o_rtt is not None:
                    rtt = o_rtt + la * (rtt - o_rtt)
                if bw is None:
                    bw = o_bw
                elif o_bw is not None:
                    bw = o_bw + la * (bw - o_bw)
                samples = old.samples + 1
            links[peer] = _link_env(src, peer, rtt, bw, obs.source, now, samples)

    def _fold_requests(self, report: NodeReport, now: float) -> None:
        cfg = self.config
        for req in report.requests:
            hit = req.sla_met
            if hit is None:
                hit = judge_sla(req.step_latencies_s, cfg.sla_step_budget_s)
            self._requests += 1
            self._hits += hit
            self._window.append((now, hit))
            self._window_hits += hit
            mean_step = req.mean_step_s
            if mean_step is not None:
                # One sample per request, so a long generation does not swamp the average.
                self._latency = ewma_step(self._latency, mean_step, cfg.latency_alpha)
            self._ttft = ewma_step(self._ttft, req.ttft_s, cfg.latency_alpha)
        if report.requests:
            self._evict(now)

    def _evict(self, now: float) -> None:
        """Drop requests that left the SLA window (older than W seconds or beyond N)."""
        window, cfg = self._window, self.config
        if cfg.sla_window_s is not None:
            horizon = now - cfg.sla_window_s
            while window and window[0][0] <= horizon:
                self._window_hits -= window.popleft()[1]
        if cfg.sla_window_requests is not None:
            while len(window) > cfg.sla_window_requests:
                self._window_hits -= window.popleft()[1]

    @staticmethod
    def _build_view(acc: _NodeAcc, report: NodeReport, now: float) -> NodeEnv:
        # Reuse the previous view's tuples when the report changed nothing in them.
        old = acc.view
        hops = tuple(acc.hop_bps.items()) if report.activation_bytes else old.hop_bytes_per_s
        links = tuple(acc.links.values()) if report.links else old.links
        return _node_env(
            node_id=acc.node_id,
            alive=True,
            last_seen=now,
            reports=acc.reports,
            cpu_utilization=acc.cpu or 0.0,
            memory_used_bytes=acc.mem_used or 0.0,
            memory_total_bytes=acc.mem_total,
            gpu_utilization=acc.gpu,
            gpu_memory_used_bytes=acc.gpu_mem_used,
            gpu_memory_total_bytes=acc.gpu_mem_total,
            queue_depth=acc.queue or 0.0,
            active_sessions=acc.sessions or 0.0,
            own_load=acc.own_load or 0.0,
            prefill=acc.prefill.view,
            decode=acc.decode.view,
            decode_background=acc.decode_background or 0.0,
            hop_bytes_per_s=hops,
            links=links,
        )

    # -- snapshot ------------------------------------------------------------
    def snapshot(self, now: float) -> EnvironmentState:
        """E(t) at ``now``: O(nodes), sharing every unchanged ``NodeEnv``."""
        self._evict(now)
        dead_after, grace = self.config.dead_after_s, self.config.report_interval_s
        nodes: dict[NodeId, NodeEnv] = {}
        for node_id, acc in self._nodes.items():
            view = acc.view
            lost = acc.lost_at
            alive = now - acc.heard_at <= dead_after and (
                lost is None or lost < acc.heard_at or now - lost <= grace)
            if view.alive is not alive:
                view = acc.view = replace(view, alive=alive)
            nodes[node_id] = view
        window = len(self._window)
        return EnvironmentState(
            now=now,
            nodes=MappingProxyType(nodes),
            latency_ewma_s=self._latency,
            ttft_ewma_s=self._ttft,
            sla_hit_rate=self._window_hits / window if window else None,
            sla_window_requests=window,
            requests_total=self._requests,
            sla_hits_total=self._hits,
            reports_accepted=self._accepted,
            reports_stale=self._stale,
            reports_refused=tuple((r.value, n) for r, n in self._refused.items()),
        )
