"""Prometheus metrics of the gateway (served on its own HTTP port at /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Registers edgesplit_build_info, which every service's /metrics carries.
from edgesplit.rpc.metrics import BUILD  # noqa: F401

REQUESTS = Counter("edgesplit_gateway_requests_total",
                   "HTTP API requests by endpoint and status", ["endpoint", "status"])
TOKENS = Counter("edgesplit_gateway_completion_tokens_total",
                 "Tokens generated for each client", ["client"])
PROMPT_TOKENS = Counter("edgesplit_gateway_prompt_tokens_total",
                        "Prompt tokens sent for each client", ["client"])
IN_FLIGHT = Gauge("edgesplit_gateway_in_flight_requests", "Requests being served")
TTFT = Histogram("edgesplit_gateway_time_to_first_token_seconds",
                 "From the request's arrival to its first token",
                 buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
FAILOVERS = Counter("edgesplit_gateway_failovers_total",
                    "Requests moved to another entry node after one failed")
HEALTHY_ENTRIES = Gauge("edgesplit_gateway_healthy_entries", "Entry nodes usable now")
