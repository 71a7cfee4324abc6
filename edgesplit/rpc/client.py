"""Client channels that match the servers' limits and keepalive (STYLE.md 5)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc

from edgesplit.rpc.transport import DEFAULT_MAX_MESSAGE, Transport, TransportSettings

T = TypeVar("T")

# Codes worth retrying for idempotent calls: the server was not there, or
# asked us to come back.
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})


def channel_credentials(tls_ca: str = "", tls_cert: str = "",
                        tls_key: str = "") -> grpc.ChannelCredentials | None:
    return TransportSettings(tls_ca, tls_cert, tls_key).credentials()


def aio_channel(target: str, max_message_bytes: int = DEFAULT_MAX_MESSAGE,
                credentials: grpc.ChannelCredentials | None = None) -> grpc.aio.Channel:
    """Deprecated shim: build a :class:`Transport` once and use its channels."""
    t = Transport(TransportSettings(max_message_bytes=max_message_bytes))
    t._credentials = credentials  # shim until call sites take a Transport
    return t.aio_channel(target)


def sync_channel(target: str, max_message_bytes: int = DEFAULT_MAX_MESSAGE,
                 credentials: grpc.ChannelCredentials | None = None) -> grpc.Channel:
    """Deprecated shim: build a :class:`Transport` once and use its channels."""
    t = Transport(TransportSettings(max_message_bytes=max_message_bytes))
    t._credentials = credentials  # shim until call sites take a Transport
    return t.sync_channel(target)


def backoff_delay(attempt: int, rng: random.Random, base_s: float = 0.05,
                  cap_s: float = 2.0) -> float:
    """Full-jitter exponential backoff."""
    return rng.uniform(0, min(cap_s, base_s * (2 ** attempt)))


async def call_with_retry(call: Callable[[float], Awaitable[T]], timeout_s: float,
                          attempts: int, rng: random.Random) -> T:
    """``call(per_try_timeout)`` for an idempotent RPC until it succeeds, fails
    for good, runs out of attempts, or the overall deadline ``timeout_s`` would
    pass while backing off. Only RETRYABLE codes are retried."""
    deadline = time.monotonic() + timeout_s
    for attempt in range(attempts):
        remaining = deadline - time.monotonic()
        try:
            return await call(max(remaining, 0.001))
        except grpc.aio.AioRpcError as exc:
            delay = backoff_delay(attempt, rng)
            if exc.code() not in RETRYABLE or attempt == attempts - 1 \
                    or time.monotonic() + delay >= deadline:
                raise
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")
