"""Prometheus metrics of the monitor: E(t) as gauges for dashboards, reports by outcome.

Base units, ``_total`` counters, bounded labels: ``node`` and ``src``/``dst``
only ever name enrolled nodes (a refused report creates no series), and
``reason`` / ``outcome`` / ``phase`` are fixed sets. The gauges are set once
per published state from the same message the API serves, so a dashboard and
``GetState`` never disagree.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

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
NODES = Gauge("edgesplit_monitor_nodes", "Enrolled nodes by liveness", ["state"])
NODE_ALIVE = Gauge("edgesplit_node_alive", "1 while the monitor hears from the node", ["node"])
NODE_AGE = Gauge("edgesplit_node_last_report_age_seconds", "Seconds since the node's last report",
                 ["node"])
NODE_CPU = Gauge("edgesplit_node_cpu_utilization_ratio", "Smoothed CPU utilisation", ["node"])
NODE_GPU = Gauge("edgesplit_node_gpu_utilization_ratio", "Smoothed GPU utilisation (GPU nodes)",
                 ["node"])
NODE_MEM = Gauge("edgesplit_node_memory_used_bytes", "Smoothed memory in use", ["node"])
NODE_MEM_TOTAL = Gauge("edgesplit_node_memory_total_bytes", "Memory in total", ["node"])
NODE_GPU_MEM = Gauge("edgesplit_node_gpu_memory_used_bytes", "Smoothed GPU memory in use",
                     ["node"])
NODE_QUEUE = Gauge("edgesplit_node_queue_depth", "Smoothed frames waiting for compute", ["node"])
NODE_SESSIONS = Gauge("edgesplit_node_active_sessions", "Smoothed live sessions", ["node"])
NODE_LOAD = Gauge("edgesplit_node_own_load_ratio",
                  "Fraction of wall time computing this node's own segments", ["node"])
NODE_COMPUTE = Gauge("edgesplit_node_compute_seconds_per_token",
                     "Sum over the node's layers of the smoothed per-token time", ["node", "phase"])
LINK_RTT = Gauge("edgesplit_link_rtt_seconds", "Smoothed round-trip time of a directed link",
                 ["src", "dst"])
LINK_BW = Gauge("edgesplit_link_bandwidth_bits_per_second",
                "Smoothed bandwidth of a directed link", ["src", "dst"])
LINK_AGE = Gauge("edgesplit_link_sample_age_seconds", "Seconds since the link's latest sample",
                 ["src", "dst"])
LATENCY = Gauge("edgesplit_latency_ewma_seconds",
                "EWMA of the mean decode step around the ring, one sample per request")
TTFT = Gauge("edgesplit_ttft_ewma_seconds", "EWMA of time to first token")
SLA = Gauge("edgesplit_sla_hit_ratio", "Share of requests in the SLA window that met the SLA")
SLA_WINDOW = Gauge("edgesplit_sla_window_requests", "Requests in the SLA window")


def publish(state: mpb.EnvironmentState) -> None:
    """Set every gauge from one state message."""
    alive = sum(1 for v in state.nodes if v.state.alive)
    NODES.labels("alive").set(alive)
    NODES.labels("dead").set(len(state.nodes) - alive)
    for v in state.nodes:
        node = v.state.node_id
        NODE_ALIVE.labels(node).set(1.0 if v.state.alive else 0.0)
        if not v.reports:
            continue  # never heard from: no figures to show, only liveness
        NODE_AGE.labels(node).set(v.last_seen_age_s)
        NODE_CPU.labels(node).set(v.cpu_utilization)
        if v.has_gpu:
            NODE_GPU.labels(node).set(v.gpu_utilization)
            NODE_GPU_MEM.labels(node).set(v.gpu_memory_used_bytes)
        NODE_MEM.labels(node).set(v.memory_used_bytes)
        NODE_MEM_TOTAL.labels(node).set(v.memory_total_bytes)
        NODE_QUEUE.labels(node).set(v.queue_depth)
        NODE_SESSIONS.labels(node).set(v.active_sessions_avg)
        NODE_LOAD.labels(node).set(v.own_load)
        NODE_COMPUTE.labels(node, "prefill").set(sum(t.prefill_s_per_token for t in v.layers))
        NODE_COMPUTE.labels(node, "decode").set(sum(t.decode_s_per_token for t in v.layers))
    for lk in state.link_views:
        if lk.rtt_s:
            LINK_RTT.labels(lk.src, lk.dst).set(lk.rtt_s)
        if lk.bandwidth_bps:
            LINK_BW.labels(lk.src, lk.dst).set(lk.bandwidth_bps)
        LINK_AGE.labels(lk.src, lk.dst).set(lk.age_s)
    if state.requests_total:
        LATENCY.set(state.latency_ewma_s)
        TTFT.set(state.ttft_ewma_s)
    SLA_WINDOW.set(state.window_requests)
    if state.window_requests:
        SLA.set(state.sla_hit_rate)
