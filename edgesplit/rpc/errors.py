"""Domain exceptions -> gRPC status codes, once, at the boundary (STYLE.md 5)."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import grpc

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])

# Exception class name -> status code. Names (not classes) keep this module
# free of torch imports; subclasses are matched through the MRO.
_CODES: dict[str, grpc.StatusCode] = {
    # edgesplit.security
    "BadSignature": grpc.StatusCode.UNAUTHENTICATED,
    "UnknownSigner": grpc.StatusCode.PERMISSION_DENIED,
    "WrongNode": grpc.StatusCode.FAILED_PRECONDITION,
    "StaleEpoch": grpc.StatusCode.FAILED_PRECONDITION,
    "ExpiredAssignment": grpc.StatusCode.FAILED_PRECONDITION,
    "FrameRejected": grpc.StatusCode.INVALID_ARGUMENT,
    # edgesplit.model
    "ShardDigestMismatch": grpc.StatusCode.FAILED_PRECONDITION,
    "SessionNotFound": grpc.StatusCode.NOT_FOUND,
    "BadFrameShape": grpc.StatusCode.INVALID_ARGUMENT,
    "PositionMismatch": grpc.StatusCode.INVALID_ARGUMENT,
    "BadFrame": grpc.StatusCode.INVALID_ARGUMENT,  # also BadFrameShape/Dtype, BadTokens
    "ContextTooLong": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "NotServed": grpc.StatusCode.FAILED_PRECONDITION,
    "UnsupportedModel": grpc.StatusCode.INVALID_ARGUMENT,
    "ModelFileError": grpc.StatusCode.FAILED_PRECONDITION,
    # edgesplit.rpc.convert and request validation
    "ConversionError": grpc.StatusCode.INVALID_ARGUMENT,
    "InvalidRequest": grpc.StatusCode.INVALID_ARGUMENT,
    "NotFound": grpc.StatusCode.NOT_FOUND,
    "Precondition": grpc.StatusCode.FAILED_PRECONDITION,
    "TooLarge": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "Unavailable": grpc.StatusCode.UNAVAILABLE,
}


class InvalidRequest(ValueError):
    """Bad input whatever the server's state."""


class NotFound(LookupError):
    """The named thing (session, shard, epoch) does not exist here."""


class Precondition(RuntimeError):
    """The server's state does not allow this now (stale epoch, wrong phase)."""


class TooLarge(ValueError):
    """A message or request exceeds a configured limit."""


class Unavailable(RuntimeError):
    """A dependency cannot be reached now; the caller may retry."""


def status_of(exc: BaseException) -> grpc.StatusCode | None:
    named = getattr(exc, "status", None)  # edgesplit.security errors carry their code's name
    if isinstance(named, str) and named in grpc.StatusCode.__members__:
        return grpc.StatusCode[named]
    for cls in type(exc).__mro__:
        code = _CODES.get(cls.__name__)
        if code is not None:
            return code
    return None


def maps_errors(fn: F) -> F:
    """Decorate an aio servicer method: known exceptions abort with their code."""
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
    if code is None:
        log.exception("unhandled error")
        await context.abort(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")
    await context.abort(code, str(exc) or type(exc).__name__)
