"""Prometheus metrics shared by every service: RPC counters and latency.

Names follow Prometheus conventions (base units, ``_total``, ``_seconds``);
labels are bounded (service, method, gRPC code).
"""

from __future__ import annotations

import importlib.metadata
import platform
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from prometheus_client import Counter, Histogram, Info, start_http_server

from edgesplit.rpc.handlers import call_unary, replies, rewrap


def _version() -> str:
    try:
        return importlib.metadata.version("edgesplit")
    except importlib.metadata.PackageNotFoundError:  # a checkout on PYTHONPATH
        return "0+unknown"


BUILD = Info("edgesplit_build", "The edgesplit release and the Python it runs on")
BUILD.info({"version": _version(), "python": platform.python_version()})

RPC_HANDLED = Counter(
    "edgesplit_rpc_server_handled_total",
    "RPCs completed by this server, by method and status code",
    ["grpc_service", "grpc_method", "grpc_code"],
)
RPC_SECONDS = Histogram(
    "edgesplit_rpc_server_handling_seconds",
    "Time to handle unary RPCs (streams: time to the end of the stream)",
    ["grpc_service", "grpc_method"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def start_metrics_server(listen: str) -> int | None:
    """Serve /metrics on ``host:port``; returns the bound port (None when off)."""
    if not listen:
        return None
    host, _, port = listen.rpartition(":")
    server, _thread = start_http_server(int(port), addr=host or "127.0.0.1")
    return int(server.server_port)


class MetricsInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Counts every RPC by method and final status code."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        service, _, method = handler_call_details.method.lstrip("/").partition("/")
        return rewrap(handler, lambda fn: _wrap_unary(fn, service, method),
                      lambda fn: _wrap_stream(fn, service, method))


def _code_of(context: Any, exc: BaseException | None) -> str:
    code = context.code() if hasattr(context, "code") else None
    if code is None:
        if exc is None:
            return "OK"
        return "UNKNOWN" if not isinstance(exc, grpc.aio.AbortError) else "ABORTED"
    return str(code.name if hasattr(code, "name") else code)


def _wrap_unary(fn: Any, service: str, method: str) -> Any:
    async def wrapper(request: Any, context: Any) -> Any:
        start = time.perf_counter()
        exc: BaseException | None = None
        try:
            return await call_unary(fn, request, context)
        except BaseException as e:
            exc = e
            raise
        finally:
            RPC_SECONDS.labels(service, method).observe(time.perf_counter() - start)
            RPC_HANDLED.labels(service, method, _code_of(context, exc)).inc()

    return wrapper


def _wrap_stream(fn: Any, service: str, method: str) -> Any:
    async def wrapper(request: Any, context: Any) -> Any:
        start = time.perf_counter()
        exc: BaseException | None = None
        try:
            async for item in replies(fn, request, context):
                yield item
        except BaseException as e:
            exc = e
            raise
        finally:
            RPC_SECONDS.labels(service, method).observe(time.perf_counter() - start)
            RPC_HANDLED.labels(service, method, _code_of(context, exc)).inc()

    return wrapper
