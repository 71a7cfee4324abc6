"""Domain errors -> gRPC status codes, once, at the boundary (docs/architecture.md, "Errors").

A :class:`edgesplit.errors.DomainError` carries its :class:`~edgesplit.errors.Code`;
here that code becomes a ``grpc.StatusCode``. Anything else is a bug and
answers INTERNAL (and is logged). A domain error with a ``retry_after_s``
(the entry's admission queue refusing a call) also tells the caller when to
come back, in the trailing metadata: ``retry-after`` (whole seconds, as
HTTP's header) and a ``google.rpc.Status`` with a ``RetryInfo`` detail in
``grpc-status-details-bin`` (``retry_after_of`` reads either back).
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
from google.rpc import error_details_pb2, status_pb2

from edgesplit.errors import (
    Code,
    DomainError,
    InvalidRequest,
    NotFound,
    Precondition,
    TooLarge,
    Unavailable,
    internal_error,
)

__all__ = [
    "InvalidRequest",
    "NotFound",
    "Precondition",
    "TooLarge",
    "Unavailable",
    "grpc_code",
    "maps_errors",
    "retry_after_of",
    "retry_metadata",
    "status_of",
]

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])

# Built member by member: a Code without a gRPC twin fails at import, not in a call.
_GRPC: dict[Code, grpc.StatusCode] = {c: grpc.StatusCode[c.name] for c in Code}


def grpc_code(code: Code) -> grpc.StatusCode:
    return _GRPC[code]


def status_of(exc: BaseException) -> grpc.StatusCode | None:
    """The status a domain error answers with; None for anything else."""
    if isinstance(exc, DomainError):
        return _GRPC[exc.code]
    return None


def maps_errors(fn: F) -> F:
    """Decorate an aio servicer method: domain errors abort with their code."""
    if inspect.isasyncgenfunction(fn):
        @functools.wraps(fn)
        async def gen_wrapper(self: Any, request: Any, context: Any) -> Any:
            try:
                async for item in fn(self, request, context):
                    yield item
            except Exception as exc:  # noqa: BLE001 - re-raised unless mapped
                await _abort_or_raise(exc, context)
        return gen_wrapper  # type: ignore[return-value]

    @functools.wraps(fn)
    async def wrapper(self: Any, request: Any, context: Any) -> Any:
        try:
            return await fn(self, request, context)
        except Exception as exc:  # noqa: BLE001 - re-raised unless mapped
            await _abort_or_raise(exc, context)
    return wrapper  # type: ignore[return-value]


async def _abort_or_raise(exc: Exception, context: Any) -> None:
    if isinstance(exc, grpc.aio.AbortError):
        raise exc
    if isinstance(exc, grpc.aio.AioRpcError):  # a dependency's verdict passes through
        await context.abort(exc.code(), f"{exc.details()}")
    code = status_of(exc)
    if code is None:  # the details stay in this server's log, under the id the client gets
        await context.abort(grpc.StatusCode.INTERNAL, internal_error(exc, log))
    details = str(exc) or type(exc).__name__
    await context.abort(code, details, retry_metadata(exc, code, details))


RETRY_AFTER = "retry-after"
STATUS_DETAILS = "grpc-status-details-bin"


def retry_metadata(exc: BaseException, code: grpc.StatusCode, details: str
                   ) -> tuple[tuple[str, str | bytes], ...]:
    """Trailing metadata with the error's retry hint (empty when it has none)."""
    after = getattr(exc, "retry_after_s", None)
    if after is None:
        return ()
    info = error_details_pb2.RetryInfo()
    info.retry_delay.FromNanoseconds(int(after * 1e9))
    status = status_pb2.Status(code=code.value[0], message=details)
    status.details.add().Pack(info)
    return ((RETRY_AFTER, str(max(1, math.ceil(after)))),
            (STATUS_DETAILS, status.SerializeToString()))


def retry_after_of(error: grpc.aio.AioRpcError | grpc.RpcError) -> float | None:
    """The retry hint of a failed call, in seconds: RetryInfo first, else
    ``retry-after``; None when the server gave none."""
    trailing = error.trailing_metadata() or ()  # type: ignore[union-attr]
    meta = {k: v for k, v in trailing}
    raw = meta.get(STATUS_DETAILS)
    if isinstance(raw, bytes):
        status = status_pb2.Status.FromString(raw)
        for detail in status.details:
            info = error_details_pb2.RetryInfo()
            if detail.Unpack(info):
                return info.retry_delay.ToNanoseconds() / 1e9
    try:
        return float(meta[RETRY_AFTER])
    except (KeyError, TypeError, ValueError):
        return None
