"""OpenAI-shaped errors and the one mapping from gRPC status codes to HTTP.

Body: ``{"error": {"message", "type", "param", "code"}}`` as the OpenAI API
returns it, so the official clients raise their usual exception classes.
The table is documented in docs/gateway.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import grpc

from edgesplit.rpc.errors import retry_after_of

# gRPC code -> (HTTP status, OpenAI error type)
_HTTP: dict[grpc.StatusCode, tuple[int, str]] = {
    grpc.StatusCode.INVALID_ARGUMENT: (400, "invalid_request_error"),
    grpc.StatusCode.OUT_OF_RANGE: (400, "invalid_request_error"),
    grpc.StatusCode.FAILED_PRECONDITION: (400, "invalid_request_error"),
    grpc.StatusCode.UNAUTHENTICATED: (401, "authentication_error"),
    grpc.StatusCode.PERMISSION_DENIED: (403, "permission_error"),
    grpc.StatusCode.NOT_FOUND: (404, "not_found_error"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (429, "rate_limit_error"),
    grpc.StatusCode.UNAVAILABLE: (503, "service_unavailable"),
    grpc.StatusCode.DEADLINE_EXCEEDED: (504, "timeout"),
    grpc.StatusCode.CANCELLED: (499, "cancelled"),
}

# Codes after which another entry may well succeed (before any token was sent,
# or, with the token history, after).
FAILOVER = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED,
                      grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.DEADLINE_EXCEEDED,
                      grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL,
                      grpc.StatusCode.CANCELLED})


@dataclass
class APIError(Exception):
    """An error the client sees: HTTP status plus an OpenAI error object."""

    status: int
    message: str
    type: str = "invalid_request_error"
    code: str | None = None
    param: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.status} {self.type}: {self.message}"

    def body(self) -> dict[str, object]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param,
                          "code": self.code}}


def from_rpc_error(exc: grpc.aio.AioRpcError, retry_after_s: int) -> APIError:
    """``from_grpc`` with the entry's own retry hint (trailing metadata) when it sent one."""
    hint = retry_after_of(exc)
    after = retry_after_s if hint is None else max(1, math.ceil(hint))
    return from_grpc(exc.code(), exc.details() or "", after)


def from_grpc(code: grpc.StatusCode, details: str, retry_after_s: int) -> APIError:
    status, kind = _HTTP.get(code, (500, "server_error"))
    headers = {"Retry-After": str(retry_after_s)} if status in (429, 503) else {}
    return APIError(status, details or code.name, kind, code.name.lower(), headers=headers)


def invalid(message: str, param: str | None = None) -> APIError:
    return APIError(400, message, "invalid_request_error", "invalid_request", param)
