"""Typed configuration of the gateway."""

from __future__ import annotations

from pydantic import PositiveFloat, PositiveInt

from edgesplit.rpc.config import CommaList, ServiceConfig, opt


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
    entries: CommaList = opt((), "entry node ids, in order of preference (empty: every "
                                 "node the monitor knows, or every entry_addresses key)")
    entry_addresses: CommaList = opt((), "NODE=HOST:PORT, comma-separated: entries "
                                         "without a monitor, or before it answers")
    state_poll_s: PositiveFloat = opt(1.0, "seconds between reads of the monitor's state")
    bench_s: PositiveFloat = opt(5.0, "seconds an entry that failed is passed over")
    api_keys: str = opt("", "YAML/JSON file of API keys -> clients and quotas (empty: open "
                            "access as client 'anonymous')")
    max_concurrent: PositiveInt = opt(16, "concurrent requests per client when its key "
                                          "names none")
    default_max_tokens: PositiveInt = opt(64, "max_tokens of a request that gives none")
    max_body_bytes: PositiveInt = opt(1024 * 1024, "largest request body accepted (413 above)")
    request_timeout_s: PositiveFloat = opt(300.0, "deadline of one Generate call on an entry")
    retry_after_s: PositiveInt = opt(1, "Retry-After seconds on 429 and 503 replies")
    failover_attempts: PositiveInt = opt(3, "entries one request tries before it fails")

    def static_entries(self) -> dict[str, str]:
        pairs = (item.partition("=") for item in self.entry_addresses)
        return {node: address for node, _, address in pairs if node and address}
