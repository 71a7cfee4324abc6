"""Domain errors -> gRPC status codes, once, at the boundary (docs/architecture.md, "Errors").

A :class:`edgesplit.errors.DomainError` carries its :class:`~edgesplit.errors.Code`;
here that code becomes a ``grpc.StatusCode``. Anything else is a bug and
answers INTERNAL (and is logged).
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import grpc

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

__all__ = ["InvalidRequest", "NotFound", "Precondition", "TooLarge", "Unavailable",
           "grpc_code", "maps_errors", "status_of"]

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
    await context.abort(code, str(exc) or type(exc).__name__)
