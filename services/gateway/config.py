"""Typed configuration of the gateway."""

from __future__ import annotations

from dataclasses import dataclass

from edgesplit.rpc.config import ServiceConfig, opt


@dataclass(frozen=True)
class GatewayConfig(ServiceConfig):
    """Gateway: the OpenAI HTTP API in front of the entry nodes.

    ``listen`` is the HTTP address here; /metrics is served on it too, so
    ``metrics_listen`` is not used. The tls_* settings are this gateway's client
    credentials towards the entry nodes and the monitor."""

    model_dir: str = opt("", "directory with the tokenizer files: the shard directory "
                             "(`edgesplit model shard` output) or the model directory")
    model_name: str = opt("", "model id served under /v1/models (default: the directory name)")
    monitor: str = opt("", "monitor address host:port: entries are its alive nodes "
                           "(empty: use entry_addresses as they are)")
    entries: tuple[str, ...] = opt((), "entry node ids, in order of preference (empty: every "
                                       "node the monitor knows, or every entry_addresses key)")
    entry_addresses: tuple[str, ...] = opt((), "NODE=HOST:PORT, comma-separated: entries "
                                                "without a monitor, or before it answers")

    def static_entries(self) -> dict[str, str]:
        pairs = (item.partition("=") for item in self.entry_addresses)
        return {node: address for node, _, address in pairs if node and address}
    state_poll_s: float = opt(1.0, "seconds between reads of the monitor's state")
    bench_s: float = opt(5.0, "seconds an entry that failed is passed over")
    api_keys: str = opt("", "YAML/JSON file of API keys -> clients and quotas (empty: open "
                            "access as client 'anonymous')")
    max_concurrent: int = opt(16, "concurrent requests per client when its key names none")
    default_max_tokens: int = opt(64, "max_tokens of a request that gives none")
    max_body_bytes: int = opt(1024 * 1024, "largest request body accepted (413 above)")
    request_timeout_s: float = opt(300.0, "deadline of one Generate call on an entry")
    retry_after_s: int = opt(1, "Retry-After seconds on 429 and 503 replies")
    failover_attempts: int = opt(3, "entries one request tries before it fails")
