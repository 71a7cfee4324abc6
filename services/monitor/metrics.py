"""Prometheus metrics of the monitor: E(t) as gauges for dashboards, reports by outcome.

Base units, ``_total`` counters, bounded labels: ``node`` and ``src``/``dst``
only ever name enrolled nodes (a refused report creates no series), and
``reason`` / ``outcome`` / ``phase`` are fixed sets. The gauges are read at
scrape time from the same state message the API serves, so a dashboard and
``GetState`` never disagree.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import REGISTRY, Counter, Gauge, Metric
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from edgesplit.rpc.convert import seconds
from edgesplit.v1 import monitor_pb2 as mpb

REPORTS = Counter("edgesplit_monitor_reports_total",
                  "Node reports received, by outcome (accepted, stale, refused)", ["outcome"])
REFUSED = Counter("edgesplit_monitor_reports_refused_total",
                  "Node reports refused, by reason (not_enrolled, identity_mismatch, malformed, "
                  "enrolment_full)",
                  ["reason"])
OPEN_ENROLLED = Gauge("edgesplit_monitor_open_enrolments",
                      "Nodes enrolled openly (--enroll-open) so far; capped by "
                      "--max-open-enrolments")


class StateCollector(Collector):
    """E(t) as gauges, built at scrape time from the last published state.

    Only what the state holds is exported: a node never heard from shows only
    its liveness, a dead node keeps ``edgesplit_node_alive 0`` but loses its
    resource series (its last CPU figure is not a measurement any more), a
    link leaves with its nodes, and latency/SLA appear once a request has been
    judged — no gauge reads 0 before it has data.
    """

    def __init__(self) -> None:
        self.state: mpb.EnvironmentState | None = None

    def collect(self) -> Iterator[Metric]:
        s = self.state
        if s is None:
            return
        nodes = GaugeMetricFamily("edgesplit_monitor_nodes", "Enrolled nodes by liveness",
                                  labels=["state"])
        alive_count = sum(1 for v in s.nodes if v.state.alive)
        nodes.add_metric(["alive"], alive_count)
        nodes.add_metric(["dead"], len(s.nodes) - alive_count)
        yield nodes
        g = {name: GaugeMetricFamily(name, doc, labels=labels) for name, doc, labels in _NODE}
        alive = {v.state.node_id for v in s.nodes if v.state.alive}
        for v in s.nodes:
            node = v.state.node_id
            g["edgesplit_node_alive"].add_metric([node], 1.0 if node in alive else 0.0)
            if not v.reports:
                continue  # never heard from: only liveness
            g["edgesplit_node_last_report_age_seconds"].add_metric([node],
                                                                   seconds(v.last_seen_age))
            if node not in alive:
                continue
            g["edgesplit_node_cpu_utilization_ratio"].add_metric([node], v.cpu_utilization)
            if v.has_gpu:
                g["edgesplit_node_gpu_utilization_ratio"].add_metric([node], v.gpu_utilization)
                g["edgesplit_node_gpu_memory_used_bytes"].add_metric(
                    [node], v.gpu_memory_used_bytes)
            g["edgesplit_node_memory_used_bytes"].add_metric([node], v.memory_used_bytes)
            g["edgesplit_node_memory_total_bytes"].add_metric([node], v.memory_total_bytes)
            g["edgesplit_node_queue_depth"].add_metric([node], v.queue_depth)
            g["edgesplit_node_active_sessions"].add_metric([node], v.active_sessions_avg)
            g["edgesplit_node_own_load_ratio"].add_metric([node], v.own_load)
            compute = g["edgesplit_node_compute_seconds_per_token"]
            compute.add_metric([node, "prefill"], sum(t.prefill_s_per_token for t in v.layers))
            compute.add_metric([node, "decode"], sum(t.decode_s_per_token for t in v.layers))
        for lk in s.link_views:
            if lk.src not in alive or lk.dst not in alive:
                continue  # a link of a dead node is retired with it
            if lk.HasField("rtt"):
                g["edgesplit_link_rtt_seconds"].add_metric([lk.src, lk.dst], seconds(lk.rtt))
            if lk.bandwidth_bps:
                g["edgesplit_link_bandwidth_bytes_per_second"].add_metric(
                    [lk.src, lk.dst], lk.bandwidth_bps / 8)
            g["edgesplit_link_sample_age_seconds"].add_metric([lk.src, lk.dst], seconds(lk.age))
        yield from g.values()
        if s.requests_total:
            yield GaugeMetricFamily("edgesplit_latency_ewma_seconds", _LATENCY_DOC,
                                    value=seconds(s.latency_ewma))
            yield GaugeMetricFamily("edgesplit_ttft_ewma_seconds",
                                    "EWMA of time to first token", value=seconds(s.ttft_ewma))
        yield GaugeMetricFamily("edgesplit_sla_window_requests", "Requests in the SLA window",
                                value=s.window_requests)
        if s.window_requests:
            yield GaugeMetricFamily("edgesplit_sla_hit_ratio", "Share of requests in the SLA "
                                    "window that met the SLA", value=s.sla_hit_rate)


_LATENCY_DOC = "EWMA of the mean decode step around the ring, one sample per request"
_N, _L = ["node"], ["src", "dst"]
_NODE = (
    ("edgesplit_node_alive", "1 while the monitor hears from the node", _N),
    ("edgesplit_node_last_report_age_seconds", "Seconds since the node's last report", _N),
    ("edgesplit_node_cpu_utilization_ratio", "Smoothed CPU utilisation", _N),
    ("edgesplit_node_gpu_utilization_ratio", "Smoothed GPU utilisation (GPU nodes)", _N),
    ("edgesplit_node_memory_used_bytes", "Smoothed memory in use", _N),
    ("edgesplit_node_memory_total_bytes", "Memory in total", _N),
    ("edgesplit_node_gpu_memory_used_bytes", "Smoothed GPU memory in use", _N),
    ("edgesplit_node_queue_depth", "Smoothed frames waiting for compute", _N),
    ("edgesplit_node_active_sessions", "Smoothed live sessions", _N),
    ("edgesplit_node_own_load_ratio",
     "Fraction of wall time computing this node's own segments", _N),
    ("edgesplit_node_compute_seconds_per_token",
     "Sum over the node's layers of the smoothed per-token time", ["node", "phase"]),
    ("edgesplit_link_rtt_seconds", "Smoothed round-trip time of a directed link", _L),
    ("edgesplit_link_bandwidth_bytes_per_second", "Smoothed bandwidth of a directed link", _L),
    ("edgesplit_link_sample_age_seconds", "Seconds since the link's latest sample", _L),
)

_STATE = StateCollector()
REGISTRY.register(_STATE)


def publish(state: mpb.EnvironmentState) -> None:
    """Serve ``state`` on /metrics from now on (the message GetState serves)."""
    _STATE.state = state
