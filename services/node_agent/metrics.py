"""Prometheus metrics of the data plane (base units, bounded labels)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Buckets from a few ms (a fast GPU decode step) to tens of seconds (a long
# prefill on an edge CPU).
LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.6,
                   0.8, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0)

TTFT = Histogram("edgesplit_time_to_first_token_seconds",
                 "Entry node: time from request to the first generated token",
                 buckets=LATENCY_BUCKETS)
STEP = Histogram("edgesplit_decode_step_seconds",
                 "Entry node: one decode step around the ring", buckets=LATENCY_BUCKETS)
TOKENS = Counter("edgesplit_tokens_generated_total", "Entry node: tokens generated")
PROMPT_TOKENS = Counter("edgesplit_prompt_tokens_total", "Entry node: prompt tokens received")
REQUEST_SECONDS = Histogram("edgesplit_request_duration_seconds",
                            "Entry node: Generate from arrival to its last token, by outcome",
                            ["outcome"], buckets=LATENCY_BUCKETS + (60.0, 120.0, 300.0))
QUEUE_SECONDS = Histogram("edgesplit_request_queue_seconds",
                          "Entry node: arrival until the request's first ring step starts "
                          "(admission, tokenising, route)", buckets=LATENCY_BUCKETS)
REQUESTS = Counter("edgesplit_requests_total", "Entry node: Generate calls by outcome",
                   ["outcome"])
ADMISSION_WAIT = Histogram("edgesplit_admission_wait_seconds",
                           "Entry node: time a Generate call waited in the admission queue "
                           "for a session slot", buckets=LATENCY_BUCKETS)
ADMISSION_WAITING = Gauge("edgesplit_admission_waiting",
                          "Entry node: Generate calls waiting for a session slot")
REFUSED = Counter("edgesplit_requests_refused_total",
                  "Entry node: Generate calls refused by the admission queue "
                  "(RESOURCE_EXHAUSTED with a retry-after hint)")
FRAMES_SENT = Counter("edgesplit_frames_sent_total", "Frames (chunks) sent, by peer", ["peer"])
BYTES_SENT = Counter("edgesplit_frame_bytes_sent_total", "Frame bytes sent, by peer", ["peer"])
FRAMES_RECEIVED = Counter("edgesplit_frames_received_total", "Frames accepted, by peer",
                          ["peer"])
FRAMES_REJECTED = Counter("edgesplit_frames_rejected_total", "Frames refused, by reason",
                          ["reason"])
WRONG_SOURCE = Counter("edgesplit_link_wrong_source_total",
                       "Link messages (and hellos) naming another sender than the caller's "
                       "certificate, by kind", ["kind"])
KV_BYTES = Gauge("edgesplit_kv_cache_bytes", "Bytes held in KV caches on this node")
SESSIONS = Gauge("edgesplit_sessions", "Live sessions on this node")
EPOCH = Gauge("edgesplit_committed_epoch", "Epoch this node serves")
REPLAYS = Counter("edgesplit_session_replays_total",
                  "Entry node: sessions replayed on a new route (after a failure, a "
                  "retired epoch, or a move)")
NEXT_STEPS = Counter("edgesplit_ring_steps_started_at_close_total",
                     "Entry node: ring steps started in the compute hand-off that closed "
                     "the session's last one (embed and hop 0 right after the head)")
MIGRATED = Counter("edgesplit_session_moves_total",
                   "Entry node: sessions that left a superseded epoch whose steps missed the "
                   "SLA, to replay on the newer route")
COMPUTE = Histogram("edgesplit_segment_compute_seconds",
                    "Time to run this node's layers for one frame",
                    ["phase"], buckets=LATENCY_BUCKETS)
BATCH_STEPS = Histogram("edgesplit_batch_steps", "Session steps run together in one batch",
                        buckets=(1, 2, 4, 8, 16, 32, 64, 128))

# Reporting to the monitor (services/node_agent/reporter.py).
REPORTS = Counter("edgesplit_agent_reports_total",
                  "Reports pushed to the monitor, by the monitor's answer", ["outcome"])
MONITOR_CONNECTED = Gauge("edgesplit_agent_monitor_connected",
                          "1 while a report stream to the monitor is up")
PROBES = Counter("edgesplit_agent_link_probes_total", "Active link probes, by kind and outcome",
                 ["kind", "outcome"])
