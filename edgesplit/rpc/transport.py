"""The one place that opens gRPC channels (docs/architecture.md, "Transport").

A component builds one :class:`Transport` from its settings in ``__main__`` and
passes it down; every outgoing channel then presents that component's
certificate, uses the servers' message limits and keepalive, and — for the
idempotent methods it names — retries through gRPC's own service-config
``retryPolicy`` instead of a hand-written loop.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import grpc

from edgesplit.rpc.server import KEEPALIVE_OPTIONS, message_options

DEFAULT_MAX_MESSAGE = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class TransportSettings:
    """A component's client credentials and limits.

    ``tls_ca`` set: TLS, verifying servers against that CA; with ``tls_cert`` and
    ``tls_key`` too, the channel presents this component's certificate (mTLS).
    Nothing set: plaintext (for loopback test beds only).
    """

    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    max_message_bytes: int = DEFAULT_MAX_MESSAGE

    def credentials(self) -> grpc.ChannelCredentials | None:
        if not self.tls_ca:
            return None
        return grpc.ssl_channel_credentials(
            root_certificates=Path(self.tls_ca).read_bytes(),
            private_key=Path(self.tls_key).read_bytes() if self.tls_key else None,
            certificate_chain=Path(self.tls_cert).read_bytes() if self.tls_cert else None,
        )


def retry_service_config(methods: Iterable[str], max_attempts: int = 4) -> str:
    """gRPC service config retrying ``methods`` ("package.Service/Method" or
    "package.Service" for all of its methods) on UNAVAILABLE, with exponential
    backoff. Only idempotent methods belong here."""
    names = []
    for m in methods:
        service, _, method = m.partition("/")
        names.append({"service": service, **({"method": method} if method else {})})
    if not names:
        return ""
    return json.dumps({"methodConfig": [{
        "name": names,
        "retryPolicy": {
            "maxAttempts": max_attempts,
            "initialBackoff": "0.05s",
            "maxBackoff": "2s",
            "backoffMultiplier": 2,
            "retryableStatusCodes": ["UNAVAILABLE"],
        },
    }]})


class Transport:
    """Channel factory bound to one component's credentials."""

    def __init__(self, settings: TransportSettings | None = None) -> None:
        self.settings = settings or TransportSettings()
        self._credentials = self.settings.credentials()

    @property
    def secure(self) -> bool:
        return self._credentials is not None

    def _options(self, retry: Iterable[str], reconnect_cap_s: float | None
                 ) -> list[tuple[str, object]]:
        options: list[tuple[str, object]] = [
            *message_options(self.settings.max_message_bytes), *KEEPALIVE_OPTIONS]
        if reconnect_cap_s is not None:
            # Reconnect quickly after a peer restart: gRPC's default backoff grows
            # to two minutes, which would read as a dead peer long before that.
            options += [("grpc.initial_reconnect_backoff_ms", 100),
                        ("grpc.min_reconnect_backoff_ms", 100),
                        ("grpc.max_reconnect_backoff_ms", int(reconnect_cap_s * 1000))]
        config = retry_service_config(retry)
        if config:
            options += [("grpc.enable_retries", 1), ("grpc.service_config", config)]
        return options

    def aio_channel(self, target: str, *, retry: Iterable[str] = (),
                    reconnect_cap_s: float | None = None) -> grpc.aio.Channel:
        options = self._options(retry, reconnect_cap_s)
        if self._credentials is not None:
            return grpc.aio.secure_channel(target, self._credentials, options=options)
        return grpc.aio.insecure_channel(target, options=options)

    def sync_channel(self, target: str, *, retry: Iterable[str] = ()) -> grpc.Channel:
        options = self._options(retry, None)
        if self._credentials is not None:
            return grpc.secure_channel(target, self._credentials, options=options)
        return grpc.insecure_channel(target, options=options)
