"""The report loop: every cycle gather, build and push a report to the monitor.

One long-lived ``Monitor.Report`` stream carries a report per cycle and brings
back an ack for each. When the stream breaks (the monitor restarted, the
network went away) the loop opens a new one after a capped, jittered backoff;
reports that were never acked are not resent: the next one is built against
the counters of the last *acked* report, so its deltas cover the gap (that is
why the agent keeps cumulative counters, see ``edgesplit.core.reports``).

Beside it, a prober times the links to this node's peers when their frames
said nothing for a while (``links.py``), through the same emulated links as
real frames.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

from edgesplit.core.reports import (
    DEFAULT_SLA_STEP_BUDGET_S,
    AgentCounters,
    LinkSource,
    build_report,
)
from edgesplit.core.types import NodeId
from edgesplit.rpc.convert_monitor import report_reason_name, report_to_proto
from edgesplit.rpc.transport import Transport
from edgesplit.v1 import monitor_pb2 as mpb
from edgesplit.v1 import monitor_pb2_grpc as mpb_grpc
from edgesplit.v1 import node_agent_pb2 as na
from edgesplit.v1 import node_agent_pb2_grpc as na_grpc
from services.node_agent import metrics as m
from services.node_agent.config import NodeAgentConfig
from services.node_agent.links import LinkStats
from services.node_agent.resources import ResourceSampler
from services.node_agent.telemetry import Telemetry

if TYPE_CHECKING:
    from services.node_agent.__main__ import Agent

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReporterSettings:
    node_id: str
    monitor: str  # host:port
    interval_s: float = 1.0
    rpc_timeout_s: float = 10.0
    max_message_bytes: int = 64 * 1024 * 1024
    probe_bytes: int = 64 * 1024  # bulk probe payload; 0: no bandwidth probes
    bandwidth_probe_cycles: int = 10  # cycles without a bandwidth sample before a bulk probe
    # A stream is re-opened this often even when healthy, so it can carry a
    # deadline like every other call and a moved monitor is found again.
    stream_lifetime_s: float = 600.0
    backoff_cap_s: float = 5.0
    sla_step_budget_s: float = DEFAULT_SLA_STEP_BUDGET_S

    @classmethod
    def from_config(cls, c: NodeAgentConfig) -> ReporterSettings:
        return cls(node_id=c.node_id, monitor=c.monitor, interval_s=c.report_interval_s,
                   rpc_timeout_s=c.rpc_timeout_s, max_message_bytes=c.max_message_bytes,
                   probe_bytes=c.probe_bytes, bandwidth_probe_cycles=c.bandwidth_probe_cycles)


def next_incarnation(state_dir: Path) -> int:
    """A number that grows with every start of this agent (kept in its state directory)."""
    path = state_dir / "incarnation"
    try:
        last = int(path.read_text())
    except (OSError, ValueError):
        last = 0
    n = last + 1
    try:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(str(n))
        tmp.replace(path)
    except OSError as exc:
        # Still larger than any stored counter for the next few thousand years.
        n = int(time.time() * 1000)
        log.warning("cannot store incarnation in %s (%s); using %d", state_dir, exc, n)
    return n


def backoff_delay(attempt: int, rng: random.Random, base_s: float, cap_s: float) -> float:
    """Full-jitter exponential backoff before re-opening the report stream (a
    long-lived stream is not a call the channel's retry policy can repeat)."""
    return rng.uniform(0, min(cap_s, base_s * (2 ** attempt)))


class Prober:
    """Times links to this node's peers that real frames have not timed lately."""

    def __init__(self, settings: ReporterSettings, agent: Agent, links: LinkStats,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.s = settings
        self.agent = agent
        self.links = links
        self._clock = clock
        self.targets: dict[str, str] = {}  # other enrolled nodes, as the monitor names them
        self._warm: set[str] = set()  # peers probed once already

    def peers(self) -> dict[str, str]:
        """Node id -> address of every link to measure: the committed epoch's
        peers (frames flow there) and the monitor's other enrolled nodes (so
        the planner knows links it might move segments onto)."""
        out = {p: a for p, a in self.targets.items() if p != self.s.node_id}
        es = self.agent.control.book.committed
        if es is not None:
            out.update({p: link.address for p, link in es.peers.items() if p != self.s.node_id})
        return out

    async def run(self) -> None:
        next_at = time.monotonic()
        while True:
            await self.probe_once()
            # Fixed rate, so a slow probe (a long link) does not stretch the cycle.
            next_at = max(next_at + self.s.interval_s, time.monotonic())
            await asyncio.sleep(next_at - time.monotonic())

    async def probe_once(self) -> None:
        peers = self.peers()
        self.links.forget(set(peers))
        now = self._clock()
        # Half a cycle of slack: a sample from the last run, taken a little late,
        # must not postpone the next probe by a whole cycle.
        half = self.s.interval_s / 2
        bw_idle = self.s.bandwidth_probe_cycles * self.s.interval_s - half
        jobs = []
        for peer, address in peers.items():
            if self.s.probe_bytes > 0 and self.links.needs_bandwidth_probe(peer, now, bw_idle):
                jobs.append(self._bandwidth(peer, address, now))
            elif self.links.needs_rtt_probe(peer, now, half):
                jobs.append(self._rtt(peer, address, now))
        await asyncio.gather(*jobs)

    async def _timed(self, peer: str, address: str, payload_bytes: int) -> tuple[int, float]:
        """One probe (on the test bed through the emulated link, like a frame):
        (bytes sent, seconds to the reply)."""
        req = na.ProbeRequest(src=self.s.node_id, payload=bytes(payload_bytes))
        size = req.ByteSize()
        channel = self.agent.links.channel(address)
        stub = na_grpc.NodeAgentStub(channel)
        if address not in self._warm:
            # Once per peer, untimed: a sample times the link, not the set-up of
            # the connection and of the first call on it.
            await stub.Probe(na.ProbeRequest(src=self.s.node_id), timeout=self.s.rpc_timeout_s)
            self._warm.add(address)
        start = time.perf_counter()
        if self.agent.emulator is not None:  # hook: the test bed's emulated link
            await self.agent.emulator.transmit(peer, size)
        await stub.Probe(req, timeout=self.s.rpc_timeout_s)
        return size, time.perf_counter() - start

    # Samples are stamped with the cycle's start, not their end: a probe of a
    # long link then does not look fresh for most of the next cycle too.
    async def _rtt(self, peer: str, address: str, now: float) -> None:
        try:
            size, seconds = await self._timed(peer, address, 0)
        except Exception as exc:  # noqa: BLE001 - a failed probe is a missing sample
            m.PROBES.labels("rtt", "failed").inc()
            log.debug("RTT probe to %s failed: %s", peer, exc)
            return
        m.PROBES.labels("rtt", "ok").inc()
        self.links.observe(peer, size, seconds, LinkSource.PROBE, now)

    async def _bandwidth(self, peer: str, address: str, now: float) -> None:
        try:
            small = await self._timed(peer, address, 0)
            large = await self._timed(peer, address, self.s.probe_bytes)
        except Exception as exc:  # noqa: BLE001 - a failed probe is a missing sample
            m.PROBES.labels("bandwidth", "failed").inc()
            log.debug("bandwidth probe to %s failed: %s", peer, exc)
            return
        m.PROBES.labels("bandwidth", "ok").inc()
        self.links.observe_pair(peer, small, large, now)


class Reporter:
    def __init__(self, settings: ReporterSettings, agent: Agent, telemetry: Telemetry,
                 sampler: ResourceSampler, incarnation: int, transport: Transport,
                 rng: random.Random | None = None) -> None:
        self.s = settings
        self.transport = transport
        self.agent = agent
        self.telemetry = telemetry
        self.sampler = sampler
        self.incarnation = incarnation
        self.prober = Prober(settings, agent, telemetry.links)
        self._rng = rng or random.Random()
        self._seq = 0
        self._previous: AgentCounters | None = None  # counters of the last acked report
        self._refusal_logged = ""

    # ---- one report ------------------------------------------------------------------
    def next_report(self) -> tuple[mpb.ReportRequest, AgentCounters, int]:
        """This cycle's report, the counters it was built from and how many requests it carries."""
        counters = self.telemetry.counters()
        requests = self.telemetry.pending_requests()
        book, emulator = self.agent.control.book, self.agent.emulator
        runners = book.all_runners()
        # An entry's sessions are its Generate calls, running or admitted to
        # wait (the offered concurrency the planner sizes replicas for), even
        # when it holds no layer with a KV cache.
        queue = self.agent.queue
        calls = queue.running + queue.waiting if queue is not None else 0
        resources = self.sampler.sample(
            queue_depth=self.agent.compute.queue_depth,
            active_sessions=max(sum(r.session_count() for r in runners), calls),
            background_utilization=emulator.conditions.background_utilization
            if emulator is not None else 0.0)
        report = build_report(
            NodeId(self.s.node_id), self._seq, time.time(), resources, counters, self._previous,
            requests, self.telemetry.links.take(), incarnation=self.incarnation,
            sla_step_budget_s=self.s.sla_step_budget_s)
        self._seq += 1
        committed = book.committed
        return report_to_proto(report, committed.epoch if committed else 0), counters, len(requests)

    def on_ack(self, ack: mpb.ReportResponse, counters: AgentCounters, requests: int) -> None:
        # Any answer, refusal included, means the monitor has seen these figures:
        # the next report starts from here (a refusal would not want them later either).
        self._previous = counters
        self.telemetry.delivered(requests)
        if ack.probe_targets:
            self.prober.targets = dict(ack.probe_targets)
        if ack.accepted:
            m.REPORTS.labels("stale" if ack.reason == mpb.REPORT_REASON_STALE else "accepted").inc()
            self._refusal_logged = ""
            return
        m.REPORTS.labels("refused").inc()
        reason = report_reason_name(ack.reason)
        if reason != self._refusal_logged:  # once per reason, not once per cycle
            log.warning("monitor refuses this node's reports: %s", reason)
            self._refusal_logged = reason

    # ---- the loop ------------------------------------------------------------------
    async def run(self) -> None:
        channel = self.transport.aio_channel(self.s.monitor, reconnect_cap_s=self.s.backoff_cap_s)
        stub = mpb_grpc.MonitorStub(channel)
        prober = asyncio.create_task(self.prober.run())
        attempt = 0
        try:
            while True:
                delivered = await self._stream(stub, quiet=attempt > 0)
                attempt = 0 if delivered else attempt + 1
                await asyncio.sleep(backoff_delay(attempt, self._rng, base_s=0.1,
                                                  cap_s=self.s.backoff_cap_s))
        finally:
            prober.cancel()
            await channel.close()

    async def _stream(self, stub: mpb_grpc.MonitorStub, quiet: bool) -> bool:
        """Report on one stream until it breaks; True if any report was acked on it."""
        call = stub.Report(timeout=self.s.stream_lifetime_s)
        delivered = False
        timeout = self.s.rpc_timeout_s
        try:
            next_at = time.monotonic()
            while True:
                msg, counters, requests = self.next_report()
                await asyncio.wait_for(call.write(msg), timeout)
                ack = await asyncio.wait_for(call.read(), timeout)
                if ack is grpc.aio.EOF:
                    return delivered
                self.on_ack(ack, counters, requests)
                if not delivered:
                    m.MONITOR_CONNECTED.set(1)
                    log.info("reporting to monitor %s every %.2fs", self.s.monitor,
                             self.s.interval_s)
                delivered = True
                # Fixed rate; after a stall, start again from now instead of bursting.
                next_at = max(next_at + self.s.interval_s, time.monotonic())
                await asyncio.sleep(next_at - time.monotonic())
        except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError,
                TimeoutError) as exc:
            code = exc.code() if isinstance(exc, grpc.aio.AioRpcError) else type(exc).__name__
            if delivered or not quiet:  # one line per outage, not one per retry
                log.warning("report stream to %s ended: %s", self.s.monitor, code)
            return delivered
        finally:
            m.MONITOR_CONNECTED.set(0)
            call.cancel()


def make_reporter(config: NodeAgentConfig, agent: Agent, transport: Transport) -> Reporter:
    """Wire telemetry into the data plane and build the reporter (``--monitor`` set)."""
    telemetry = Telemetry()
    telemetry.attach(agent.compute, agent.stage, agent.entry)
    emulator = agent.emulator
    busy = (lambda: emulator.emulated_busy_s) if emulator is not None else (lambda: 0.0)
    sampler = ResourceSampler(config.device, scope=config.utilization_scope, emulated_busy=busy)
    return Reporter(ReporterSettings.from_config(config), agent, telemetry, sampler,
                    next_incarnation(Path(config.state_dir)), transport)
