"""The one place that opens gRPC channels (docs/architecture.md, "Transport").

A component builds one :class:`Transport` from its settings in ``__main__`` and
passes it down; every outgoing channel then presents that component's
certificate, uses the servers' message limits and keepalive, and retries the
idempotent methods of :data:`IDEMPOTENT` through gRPC's own service-config
``retryPolicy`` (capped attempts, exponential backoff, inside the call's own
deadline) instead of a hand-written loop. Nothing else is retried: a retried
``Link`` message or ``Apply`` would run twice.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import grpc

from edgesplit.errors import InsecureSetup
from edgesplit.rpc.server import KEEPALIVE_OPTIONS, is_loopback, message_options

DEFAULT_MAX_MESSAGE = 64 * 1024 * 1024
# gRPC itself caps maxAttempts at 5 (the first try included).
MAX_ATTEMPTS_CAP = 5

# Methods that may run twice with the effect of once, as "package.Service/Method"
# (a whole service: "package.Service"). Each is named with why it is safe.
IDEMPOTENT: frozenset[str] = frozenset({
    # A re-delivered identical assignment is a DUPLICATE on the node; Commit
    # and Abort act by epoch; GetInfo and Probe only read.
    "edgesplit.v1.NodeAgent/Prepare",
    "edgesplit.v1.NodeAgent/Commit",
    "edgesplit.v1.NodeAgent/Abort",
    "edgesplit.v1.NodeAgent/GetInfo",
    "edgesplit.v1.NodeAgent/Probe",
    "edgesplit.v1.NodeAgent/Hello",  # the same salt again
    # Reads; FetchShard names its offset, so a retried stream resends the same bytes.
    "edgesplit.v1.Broadcaster/Current",
    "edgesplit.v1.Broadcaster/FetchShard",
    "edgesplit.v1.Broadcaster/ListShards",
    "edgesplit.v1.Monitor/GetState",
    "edgesplit.v1.Monitor/WatchState",
    "edgesplit.v1.Orchestrator/Status",
    "edgesplit.v1.Orchestrator/History",
    # The planner is a pure function of its request.
    "edgesplit.v1.SplitReviser/Revise",
    # SetConditions sets absolute values.
    "edgesplit.v1.TestbedAdmin/SetConditions",
    "edgesplit.v1.TestbedAdmin/GetConditions",
    "grpc.health.v1.Health/Check",
})


class _TlsConfig(Protocol):
    """What a component's configuration (``rpc.config.ServiceConfig``) offers."""

    tls_ca: str
    tls_cert: str
    tls_key: str
    max_message_bytes: int
    insecure: bool


@dataclass(frozen=True, slots=True)
class TransportSettings:
    """A component's client credentials, limits and retry budget.

    ``tls_ca`` set: TLS, verifying servers against that CA; with ``tls_cert`` and
    ``tls_key`` too, the channel presents this component's certificate (mTLS).
    ``insecure``: plaintext, and only to loopback targets. Neither: plaintext
    (kept for existing set-ups; servers then authorise nothing). ``retry_attempts``:
    tries of an idempotent call on UNAVAILABLE, the first included (at most 5).
    """

    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    max_message_bytes: int = DEFAULT_MAX_MESSAGE
    retry_attempts: int = 4
    insecure: bool = False

    @classmethod
    def of(cls, config: _TlsConfig, retry_attempts: int = 4) -> TransportSettings:
        """The settings of a service from its configuration."""
        return cls(config.tls_ca, config.tls_cert, config.tls_key, config.max_message_bytes,
                   retry_attempts, config.insecure)

    def credentials(self) -> grpc.ChannelCredentials | None:
        given = [name for name in ("tls_ca", "tls_cert", "tls_key") if getattr(self, name)]
        if self.insecure or not given:
            return None
        if len(given) < 3:
            missing = sorted({"tls_ca", "tls_cert", "tls_key"} - set(given))
            raise InsecureSetup(f"outgoing mTLS needs {', '.join(missing)} too")
        return grpc.ssl_channel_credentials(
            root_certificates=Path(self.tls_ca).read_bytes(),
            private_key=Path(self.tls_key).read_bytes(),
            certificate_chain=Path(self.tls_cert).read_bytes(),
        )


def retry_service_config(methods: Iterable[str], max_attempts: int = 4) -> str:
    """gRPC service config retrying ``methods`` ("package.Service/Method" or
    "package.Service" for all of its methods) on UNAVAILABLE, with exponential
    backoff. Only idempotent methods belong here (:data:`IDEMPOTENT`)."""
    names = []
    for m in sorted(set(methods)):
        service, _, method = m.partition("/")
        names.append({"service": service, **({"method": method} if method else {})})
    if not names or max_attempts < 2:
        return ""
    return json.dumps({"methodConfig": [{
        "name": names,
        "retryPolicy": {
            "maxAttempts": min(max_attempts, MAX_ATTEMPTS_CAP),
            "initialBackoff": "0.05s",
            "maxBackoff": "2s",
            "backoffMultiplier": 2,
            "retryableStatusCodes": ["UNAVAILABLE"],
        },
    }]})


class Transport:
    """Channel factory bound to one component's credentials."""

    def __init__(self, settings: TransportSettings) -> None:
        self.settings = settings
        self._credentials = settings.credentials()

    def _plaintext_to(self, target: str) -> bool:
        if self._credentials is not None:
            return False
        # An unset address ("") reaches nothing; anything else must be loopback.
        if self.settings.insecure and target and not is_loopback(target):
            raise InsecureSetup(f"insecure: plaintext to {target} refused, not a loopback address")
        return True

    @property
    def secure(self) -> bool:
        return self._credentials is not None

    def _options(self, retry: Iterable[str] | None, reconnect_cap_s: float | None
                 ) -> list[tuple[str, object]]:
        options: list[tuple[str, object]] = [
            *message_options(self.settings.max_message_bytes), *KEEPALIVE_OPTIONS]
        if reconnect_cap_s is not None:
            # Reconnect quickly after a peer restart: gRPC's default backoff grows
            # to two minutes, which would read as a dead peer long before that.
            options += [("grpc.initial_reconnect_backoff_ms", 100),
                        ("grpc.min_reconnect_backoff_ms", 100),
                        ("grpc.max_reconnect_backoff_ms", int(reconnect_cap_s * 1000))]
        methods = IDEMPOTENT if retry is None else frozenset(retry)
        if not methods <= IDEMPOTENT:
            raise ValueError(f"not idempotent, must not be retried: {sorted(methods - IDEMPOTENT)}")
        config = retry_service_config(methods, self.settings.retry_attempts)
        if config:
            options += [("grpc.enable_retries", 1), ("grpc.service_config", config)]
        return options

    def aio_channel(self, target: str, *, retry: Iterable[str] | None = None,
                    reconnect_cap_s: float | None = None) -> grpc.aio.Channel:
        """A channel to ``target``; ``retry``: the idempotent methods to retry
        on it (default: all of :data:`IDEMPOTENT`; ``()``: none)."""
        options = self._options(retry, reconnect_cap_s)
        if self._plaintext_to(target):
            return grpc.aio.insecure_channel(target, options=options)
        return grpc.aio.secure_channel(target, self._credentials, options=options)

    def sync_channel(self, target: str, *, retry: Iterable[str] | None = None) -> grpc.Channel:
        options = self._options(retry, None)
        if self._plaintext_to(target):
            return grpc.insecure_channel(target, options=options)
        return grpc.secure_channel(target, self._credentials, options=options)


# Plaintext on loopback, for in-process tests and explicitly insecure test beds.
LOOPBACK_PLAINTEXT = TransportSettings(insecure=True)
