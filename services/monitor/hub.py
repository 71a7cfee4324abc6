"""The monitor's state holder: the pure reducer plus enrolment, identity and publishing.

``edgesplit.core.monitor.Monitor`` does the folding; this class decides who
may report (inventory, open enrolment, mTLS identity), keeps the few facts
the reducer does not (committed epochs, refusals that never reach it), and
publishes E(t) once per report cycle (and early on a liveness change) to
``WatchState`` subscribers and the Prometheus gauges.

Everything runs on the server's event loop, so the reducer (not thread-safe)
is only ever called from one thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable

from edgesplit.core.inventory import NodeInventory
from edgesplit.core.monitor import IngestOutcome, Monitor, MonitorConfig, ReportRefused
from edgesplit.core.types import ModelProfile, NodeId
from edgesplit.rpc.convert import ConversionError
from edgesplit.rpc.convert_monitor import (
    default_node_state,
    report_from_proto,
    report_reason,
    state_to_proto,
)
from edgesplit.v1 import monitor_pb2 as mpb
from services.monitor import metrics as m

log = logging.getLogger(__name__)

IDENTITY_MISMATCH = "identity_mismatch"
MALFORMED = "malformed"
ENROLMENT_FULL = "enrolment_full"


class MonitorHub:
    def __init__(self, reducer: MonitorConfig, inventory: NodeInventory, *,
                 enroll_open: bool = False, default_flops_per_s: float = 1e9,
                 max_open_enrolments: int = 64, profile: ModelProfile | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.config = reducer
        self.inventory = inventory
        self.enroll_open = enroll_open
        # Open enrolment takes any node id a report names: without a bound a
        # stream of made-up ids would grow the state (and E(t)) without end.
        self.max_open_enrolments = max(0, max_open_enrolments)
        self.open_enrolled = 0
        self.default_flops_per_s = default_flops_per_s
        self.profile = profile
        self._clock = clock
        self._wall = wall
        self.monitor = Monitor(reducer, inventory.ids, now=clock())
        self._epochs: dict[NodeId, int] = {}
        self._heard: dict[NodeId, float] = {}  # last accepted report, to spot returns cheaply
        # Refusals decided here (identity, undecodable messages) never reach the
        # reducer's own counters; they are merged into the served state.
        self._refused_here: Counter[str] = Counter()
        self._version = 0
        self._published: mpb.EnvironmentState | None = None
        self._changed = asyncio.Event()
        self._wake = asyncio.Event()
        self.closing = asyncio.Event()  # set on shutdown: streams end instead of holding it up

    # ---- reports ---------------------------------------------------------------
    def ingest(self, msg: mpb.ReportRequest,
               identity: frozenset[str] | None = None) -> mpb.ReportResponse:
        """Fold one report in; ``identity`` is the peer certificate's names (None: no mTLS)."""
        ack = mpb.ReportResponse(seq=msg.seq)
        if identity is not None and msg.node_id not in identity:
            return self._refuse(ack, IDENTITY_MISMATCH, msg.node_id,
                                f"certificate names {sorted(identity)}")
        try:
            report = report_from_proto(msg)
        except ConversionError as exc:
            return self._refuse(ack, MALFORMED, msg.node_id, str(exc))
        now = self._clock()
        if self.enroll_open and report.node_id not in self.monitor.enrolled:
            if self.open_enrolled >= self.max_open_enrolments:
                return self._refuse(ack, ENROLMENT_FULL, msg.node_id,
                                    f"{self.open_enrolled} nodes already enrolled openly")
            self._enroll(report.node_id, report.resources.memory_total_bytes, now)
        try:
            outcome = self.monitor.ingest(report, now)
        except ReportRefused as exc:
            # The reducer counted it already; the metric and the log are ours.
            m.REPORTS.labels("refused").inc()
            m.REFUSED.labels(exc.reason.value).inc()
            log.info("%s", exc)
            ack.reason = report_reason(exc.reason.value)
            return ack
        ack.accepted = True
        if outcome is IngestOutcome.STALE:
            m.REPORTS.labels("stale").inc()
            ack.reason = mpb.REPORT_REASON_STALE
            return ack
        m.REPORTS.labels("accepted").inc()
        for node in self.inventory:
            if node.address and node.node_id != report.node_id:
                ack.probe_targets[node.node_id] = node.address
        self._epochs[report.node_id] = msg.committed_epoch
        heard = self._heard.get(report.node_id)
        self._heard[report.node_id] = now
        if heard is None or now - heard > self.config.dead_after_s:
            self._wake.set()  # a node appeared or came back: publish now, not next cycle
        return ack

    def lost(self, node_id: str) -> None:
        """``node_id``'s report stream ended: it is dead one report cycle from
        now unless it reports again (``Monitor.stream_lost``); publish then."""
        self.monitor.stream_lost(NodeId(node_id), self._clock())
        grace = self.config.report_interval_s
        # debug: every renewal of an agent's stream ends one too
        log.debug("report stream of %s ended: dead in %.2fs unless it reports", node_id, grace)
        asyncio.get_running_loop().call_later(grace * 1.05, self._wake.set)

    def refuse_other(self, msg: mpb.ReportRequest, reason: str, detail: str) -> mpb.ReportResponse:
        """Refuse a report for a reason the servicer found (counted like any refusal)."""
        return self._refuse(mpb.ReportResponse(seq=msg.seq), reason, msg.node_id, detail)

    def _refuse(self, ack: mpb.ReportResponse, reason: str, node: str,
                detail: str) -> mpb.ReportResponse:
        self._refused_here[reason] += 1
        m.REPORTS.labels("refused").inc()
        m.REFUSED.labels(reason).inc()
        log.info("report from %r refused (%s): %s", node, reason, detail)
        ack.reason = report_reason(reason)
        return ack

    def _enroll(self, node_id: NodeId, memory_bytes: int, now: float) -> None:
        self.monitor.enroll(node_id, now)
        spec = default_node_state(node_id, memory_bytes, self.default_flops_per_s)
        self.inventory = NodeInventory((*self.inventory.nodes, spec))
        self.open_enrolled += 1
        m.OPEN_ENROLLED.set(self.open_enrolled)
        log.info("enrolled %s openly (untrusted, %.3g FLOP/s until measured)",
                 node_id, self.default_flops_per_s)

    # ---- state -------------------------------------------------------------------
    def state(self) -> mpb.EnvironmentState:
        """A fresh E(t) (liveness judged now)."""
        env = self.monitor.snapshot(self._clock())
        self._version += 1
        msg = state_to_proto(env, self.inventory, version=self._version, wall_time=self._wall(),
                             report_interval_s=self.config.report_interval_s,
                             dead_after_s=self.config.dead_after_s, profile=self.profile,
                             committed_epochs=self._epochs)
        for reason, n in self._refused_here.items():
            msg.reports_refused[reason] = msg.reports_refused[reason] + n
        return msg

    def publish(self) -> mpb.EnvironmentState:
        """Build a state, hand it to watchers and the gauges."""
        msg = self.state()
        self._published = msg
        m.publish(msg)
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        return msg

    async def run(self) -> None:
        """Publish once per report cycle, or at once when a node appears or returns."""
        interval = self.config.report_interval_s
        while True:
            self.publish()
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), interval)
            except TimeoutError:
                pass

    def close(self) -> None:
        """End every stream now, so a stopping server does not wait out its grace period
        for subscribers and agents that would never hang up by themselves."""
        self.closing.set()
        self._changed.set()

    async def watch(self, min_interval_s: float = 0.0) -> AsyncIterator[mpb.EnvironmentState]:
        """The latest published state now, then every later one, at most one per
        ``min_interval_s`` (a slow reader skips states rather than queueing them)."""
        if self._published is None:
            self.publish()
        last_sent = -1
        while not self.closing.is_set():
            # Take the event before reading the state: a publish in between then
            # sets this very event, so no state is missed.
            changed = self._changed
            msg = self._published
            assert msg is not None
            if msg.version == last_sent:
                await changed.wait()
                continue
            last_sent = msg.version
            started = self._clock()
            yield msg
            wait = min_interval_s - (self._clock() - started)
            if wait > 0:
                await asyncio.sleep(wait)
