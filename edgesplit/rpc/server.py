"""One server lifecycle for every service (docs/architecture.md §10.7).

``create_server`` builds a ``grpc.aio`` server with health, reflection (only
with ``reflection: true``), explicit message limits, agreed keepalive and
optional (m)TLS, and binds it;
``run_service`` adds Prometheus metrics, marks the service SERVING, and stops
gracefully on SIGTERM/SIGINT (health flips to NOT_SERVING first so load
balancers drain it).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from edgesplit.errors import InsecureSetup
from edgesplit.rpc.authz import AuthorizationInterceptor
from edgesplit.rpc.config import ServiceConfig
from edgesplit.rpc.metrics import MetricsInterceptor, start_metrics_server

log = logging.getLogger(__name__)

# Client and server agree on these so neither side drops a healthy idle
# connection: the client pings at most every 20 s, the server allows pings
# every 10 s even without calls in flight.
KEEPALIVE_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
)
SERVER_KEEPALIVE_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
)


def message_options(max_bytes: int) -> list[tuple[str, int]]:
    return [
        ("grpc.max_send_message_length", max_bytes),
        ("grpc.max_receive_message_length", max_bytes),
    ]


@dataclass(frozen=True)
class Registration:
    """One gRPC service to add: ``add(servicer, server)`` and its full name."""

    add: Callable[[Any, grpc.aio.Server], None]
    servicer: Any
    name: str  # e.g. "edgesplit.v1.Monitor"


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    names: tuple[str, ...]

    async def set_serving(self, serving: bool) -> None:
        status = (health_pb2.HealthCheckResponse.SERVING if serving
                  else health_pb2.HealthCheckResponse.NOT_SERVING)
        for name in ("", *self.names):
            await self.health.set(name, status)

    async def stop(self, grace_s: float) -> None:
        await self.set_serving(False)
        await self.server.stop(grace_s)


def is_loopback(address: str) -> bool:
    """``host:port`` (or a gRPC target such as ``dns:///host:port``, ``unix:...``)
    names this machine's loopback: 127.0.0.0/8, ::1 or localhost."""
    if address.startswith("unix:"):
        return True
    target = address.split("///", 1)[-1].removeprefix("ipv4:").removeprefix("ipv6:")
    host = target.rpartition(":")[0] if target.count(":") == 1 or "]" in target else target
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _server_credentials(config: ServiceConfig) -> grpc.ServerCredentials | None:
    """mTLS (a client certificate required) when the certificates are given;
    plaintext only when asked for with ``insecure``, and then only on loopback;
    neither is refused (docs/architecture.md, "Security model")."""
    if config.insecure:
        if not is_loopback(config.listen):
            raise InsecureSetup(f"--insecure serves plaintext: refused on {config.listen}, "
                                "which is not a loopback address")
        return None
    given = [name for name in ("tls_cert", "tls_key", "tls_ca") if getattr(config, name)]
    if not given:
        # No silent plaintext: a server that cannot tell callers apart would
        # authorise nothing, so it must be asked for by name.
        raise InsecureSetup(f"no TLS material to serve {config.listen}: give --tls-cert, "
                            "--tls-key and --tls-ca (e.g. from `edgesplit pki init`), or "
                            "--insecure for plaintext on loopback only")
    if len(given) < 3:
        missing = sorted({"tls_cert", "tls_key", "tls_ca"} - set(given))
        raise InsecureSetup("mTLS needs " + ", ".join(f"--{m.replace('_', '-')}"
                                                      for m in missing))
    cert = Path(config.tls_cert).read_bytes()
    key = Path(config.tls_key).read_bytes()
    ca = Path(config.tls_ca).read_bytes()
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca,
                                       require_client_auth=True)


async def create_server(config: ServiceConfig, services: Sequence[Registration],
                        interceptors: Sequence[grpc.aio.ServerInterceptor] = ()
                        ) -> RunningServer:
    """Build, bind and start a server; returns it with the port it bound."""
    # No SO_REUSEPORT: a second server on a taken port must fail, not share it
    # (the kernel would split connections between two different services).
    options = [*message_options(config.max_message_bytes), *SERVER_KEEPALIVE_OPTIONS,
               ("grpc.so_reuseport", 0)]
    creds = _server_credentials(config)  # refuses an insecure set-up before binding
    # Every server authorises every call by the caller's certificate (rpc/authz.py);
    # only an explicitly insecure loopback server has no certificates to check.
    server = grpc.aio.server(
        interceptors=[MetricsInterceptor(), AuthorizationInterceptor(enforce=creds is not None),
                      *interceptors],
        options=options)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = tuple(s.name for s in services)
    for reg in services:
        reg.add(reg.servicer, server)
    if config.reflection:
        reflection.enable_server_reflection(
            (*names, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    port = (server.add_secure_port(config.listen, creds) if creds
            else server.add_insecure_port(config.listen))
    if port == 0:
        raise RuntimeError(f"could not bind {config.listen}")
    await server.start()
    running = RunningServer(server, port, health_servicer, names)
    for name in ("", *names):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    return running


def bound_address(config: ServiceConfig, port: int) -> str:
    host = config.listen.rpartition(":")[0] or "127.0.0.1"
    return f"{host}:{port}"


async def run_service(config: ServiceConfig, services: Sequence[Registration],
                      on_ready: Callable[[RunningServer], Awaitable[None]] | None = None,
                      on_stop: Callable[[], Awaitable[None]] | None = None) -> None:
    """Serve until SIGTERM/SIGINT, then drain and stop within ``grace_s``."""
    logging.basicConfig(level=config.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    metrics_port = start_metrics_server(config.metrics_listen)
    running = await create_server(config, services)
    if on_ready is not None:
        await on_ready(running)
    await running.set_serving(True)
    address = bound_address(config, running.port)
    log.info("serving %s on %s (metrics %s)", ",".join(running.names), address,
             metrics_port if metrics_port is not None else "off")
    if config.ready_file:
        tmp = Path(config.ready_file + ".tmp")
        tmp.write_text(address)
        tmp.replace(config.ready_file)  # atomic: readers never see half a file
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping (grace %.1fs)", config.grace_s)
    await running.set_serving(False)
    if on_stop is not None:
        await on_stop()
    await running.server.stop(config.grace_s)
