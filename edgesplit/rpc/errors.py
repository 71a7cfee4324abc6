"""Domain errors -> gRPC statuses, once, at the boundary (docs/architecture.md §8).

A :class:`edgesplit.errors.DomainError` carries its :class:`~edgesplit.errors.Code`;
here that code becomes a ``grpc.StatusCode``, and the error's reason and field
become google.rpc details in the status (``grpc-status-details-bin``):
``ErrorInfo`` always, plus ``BadRequest`` field violations on INVALID_ARGUMENT
and ``PreconditionFailure`` violations on FAILED_PRECONDITION when a field is
named. :func:`error_details` reads them back on the client side. A domain
error with a ``retry_after_s`` (the entry's admission queue refusing a call)
also tells the caller when to come back: a ``RetryInfo`` detail and
``retry-after`` (whole seconds, as HTTP's header) in the trailing metadata
(``retry_after_of`` reads either back). Anything else is a bug and answers
INTERNAL (and is logged).
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

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

__all__ = ["DOMAIN", "ErrorDetails", "InvalidRequest", "NotFound", "Precondition", "TooLarge",
           "Unavailable", "error_details", "grpc_code", "maps_errors", "retry_after_of",
           "retry_metadata", "rich_status", "status_of"]

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


DOMAIN = "edgesplit"  # ErrorInfo.domain: the namespace of every reason below
_DETAILS_KEY = "grpc-status-details-bin"  # where gRPC carries a google.rpc.Status


def rich_status(exc: DomainError) -> grpc.Status:
    """The status ``exc`` answers with, its details attached."""
    code = _GRPC[exc.code]
    message = str(exc) or type(exc).__name__
    status = status_pb2.Status(code=code.value[0], message=message)
    info = error_details_pb2.ErrorInfo(reason=exc.error_reason or exc.code.name, domain=DOMAIN)
    if exc.field:
        info.metadata["field"] = exc.field
    status.details.add().Pack(info)
    if exc.field and code is grpc.StatusCode.INVALID_ARGUMENT:
        status.details.add().Pack(error_details_pb2.BadRequest(field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=exc.field, description=message)]))
    elif exc.field and code is grpc.StatusCode.FAILED_PRECONDITION:
        status.details.add().Pack(error_details_pb2.PreconditionFailure(violations=[
            error_details_pb2.PreconditionFailure.Violation(
                type=info.reason, subject=exc.field, description=message)]))
    after = getattr(exc, "retry_after_s", None)
    if after is not None:
        status.details.add().Pack(_retry_info(after))
    out = rpc_status.to_status(status)
    if after is not None:
        out = out._replace(trailing_metadata=(  # type: ignore[attr-defined]
            *out.trailing_metadata, (RETRY_AFTER, str(max(1, math.ceil(after))))))
    return out


@dataclass(frozen=True, slots=True)
class ErrorDetails:
    """What a failed call's status said beyond its code and message."""

    reason: str = ""  # ErrorInfo.reason ("" when the server sent none)
    domain: str = ""
    fields: tuple[str, ...] = ()  # BadRequest / PreconditionFailure: the fields at fault
    metadata: Mapping[str, str] = field(default_factory=dict)


def error_details(err: grpc.RpcError) -> ErrorDetails:
    """The google.rpc details of a failed call (sync or aio); empty when none came."""
    try:
        status = rpc_status.from_call(err)  # type: ignore[arg-type]
    except ValueError:  # code or message disagree with the details: trust neither
        status = None
    if status is None:
        return ErrorDetails()
    reason, domain, fields, metadata = "", "", [], {}
    for detail in status.details:
        info, bad, pre = (error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest(),
                          error_details_pb2.PreconditionFailure())
        if detail.Unpack(info):
            reason, domain, metadata = info.reason, info.domain, dict(info.metadata)
        elif detail.Unpack(bad):
            fields += [v.field for v in bad.field_violations]
        elif detail.Unpack(pre):
            fields += [v.subject for v in pre.violations]
    return ErrorDetails(reason, domain, tuple(fields), metadata)


def _details_bin(err: grpc.aio.AioRpcError) -> tuple[tuple[str, bytes], ...]:
    """A dependency's status details, passed on with its code and message."""
    return tuple((k, v) for k, v in (err.trailing_metadata() or ())
                 if k == _DETAILS_KEY and isinstance(v, bytes))


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
        await context.abort(exc.code(), f"{exc.details()}", _details_bin(exc))
    if not isinstance(exc, DomainError):  # the details stay in this server's log,
        await context.abort(grpc.StatusCode.INTERNAL, internal_error(exc, log))  # under an id
    status = rich_status(exc)
    await context.abort(status.code, status.details, status.trailing_metadata)


RETRY_AFTER = "retry-after"
STATUS_DETAILS = _DETAILS_KEY


def _retry_info(after_s: float) -> error_details_pb2.RetryInfo:
    info = error_details_pb2.RetryInfo()
    info.retry_delay.FromNanoseconds(int(after_s * 1e9))
    return info


def retry_metadata(exc: BaseException, code: grpc.StatusCode, details: str
                   ) -> tuple[tuple[str, str | bytes], ...]:
    """Trailing metadata with only the error's retry hint (empty when it has none)."""
    after = getattr(exc, "retry_after_s", None)
    if after is None:
        return ()
    status = status_pb2.Status(code=code.value[0], message=details)
    status.details.add().Pack(_retry_info(after))
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
