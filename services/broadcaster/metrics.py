"""Prometheus metrics of the broadcaster (base units, bounded labels)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# outcome: committed, aborted, partial (decided but some Commit failed), duplicate.
ROLLOUTS = Counter("edgesplit_rollouts_total", "Apply calls by outcome", ["outcome"])
# From a few ms (cached shards, a handful of nodes on a LAN) to minutes
# (fetching a large model's shards over a slow link).
ROLLOUT_SECONDS = Histogram("edgesplit_rollout_seconds",
                            "Apply: from the call to the last Commit or Abort", ["outcome"],
                            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                                     30.0, 60.0, 120.0, 300.0))
SHARD_BYTES = Counter("edgesplit_shard_bytes_served_total",
                      "Encrypted shard bytes streamed by FetchShard")
FETCH_DENIED = Counter("edgesplit_shard_fetch_denied_total",
                       "FetchShard calls refused: the node is not assigned the shard")
EPOCH = Gauge("edgesplit_broadcaster_epoch", "Epoch of the committed plan")
KEY_MISMATCH = Counter("edgesplit_broadcaster_key_mismatch_total",
                       "Nodes refused a rollout: GetInfo showed a key other than the enrolled one")
PRIVATE_ROUTES = Gauge("edgesplit_broadcaster_private_routes",
                       "Routes of the committed plan a privacy=high request may use")
