"""Client channels that match the servers' limits and keepalive (STYLE.md 5)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import grpc

from edgesplit.rpc.server import KEEPALIVE_OPTIONS, message_options

T = TypeVar("T")

# Codes worth retrying for idempotent calls: the server was not there, or
# asked us to come back.
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})


def channel_credentials(tls_ca: str = "", tls_cert: str = "",
                        tls_key: str = "") -> grpc.ChannelCredentials | None:
    if not tls_ca:
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=Path(tls_ca).read_bytes(),
        private_key=Path(tls_key).read_bytes() if tls_key else None,
        certificate_chain=Path(tls_cert).read_bytes() if tls_cert else None,
    )


def aio_channel(target: str, max_message_bytes: int = 64 * 1024 * 1024,
                credentials: grpc.ChannelCredentials | None = None) -> grpc.aio.Channel:
    options = [*message_options(max_message_bytes), *KEEPALIVE_OPTIONS]
    if credentials is not None:
        return grpc.aio.secure_channel(target, credentials, options=options)
    return grpc.aio.insecure_channel(target, options=options)


def sync_channel(target: str, max_message_bytes: int = 64 * 1024 * 1024,
                 credentials: grpc.ChannelCredentials | None = None) -> grpc.Channel:
    options = [*message_options(max_message_bytes), *KEEPALIVE_OPTIONS]
    if credentials is not None:
        return grpc.secure_channel(target, credentials, options=options)
    return grpc.insecure_channel(target, options=options)


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
