"""Who may call what: one table, enforced by one server interceptor.

Every component's certificate names it with a URI subject alternative name
``spiffe://edgesplit/<role>/<name>`` (``edgesplit pki`` writes them). The
interceptor reads the verified peer certificate, looks the method up in
:data:`POLICY` and refuses — before the handler runs, so before any side
effect — a caller without a certificate (UNAUTHENTICATED) or with a role the
table does not list (PERMISSION_DENIED), counting each refusal by method and
reason. A method missing from the table is refused too: a new RPC is closed
until someone decides who may call it.

Checks that need the request (a frame's ``src`` equals the caller's node id, a
report's node id, a shard of the caller's own assignment) stay with the
servicer, which asks :func:`caller` for the identity. A request whose bytes do
not parse is refused here too (INVALID_ARGUMENT, after the identity check,
counted with reason ``malformed``), instead of gRPC's UNKNOWN with the
parser's exception text and a logged traceback.
See docs/architecture.md, "Security model".
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import grpc
from prometheus_client import Counter

from edgesplit.rpc.handlers import MALFORMED, call_unary, replies, rewrap
from edgesplit.security.identity import Identity, Role

__all__ = ["POLICY", "AuthorizationInterceptor", "Identity", "Role", "caller", "decide",
           "identities"]

_URI_KEY = "x509_subject_alternative_name"

DENIED = Counter(
    "edgesplit_rpc_denied_total",
    "Calls refused before the handler ran, by method and reason",
    ["grpc_method", "reason"],
)


_R = Role
# grpc method -> roles that may call it. Health is open (probes carry no
# certificate and it reveals nothing); every other method is listed here.
POLICY: Mapping[str, frozenset[Role]] = {
    "/grpc.health.v1.Health/Check": frozenset(_R),
    "/grpc.health.v1.Health/Watch": frozenset(_R),
    # List names every service and its status: for operators, like reflection.
    "/grpc.health.v1.Health/List": frozenset({_R.ADMIN}),
    "/edgesplit.v1.Broadcaster/Apply": frozenset({_R.ORCHESTRATOR}),
    "/edgesplit.v1.Broadcaster/Current": frozenset({_R.ORCHESTRATOR, _R.ADMIN}),
    "/edgesplit.v1.Broadcaster/FetchShard": frozenset({_R.NODE}),  # own shards: servicer
    "/edgesplit.v1.Broadcaster/ListShards": frozenset({_R.NODE, _R.ADMIN}),
    "/edgesplit.v1.Inference/Generate": frozenset({_R.CLIENT, _R.GATEWAY, _R.ADMIN}),
    "/edgesplit.v1.Monitor/Report": frozenset({_R.NODE}),  # its own node id: servicer
    "/edgesplit.v1.Monitor/GetState": frozenset({_R.ORCHESTRATOR, _R.GATEWAY, _R.ADMIN}),
    "/edgesplit.v1.Monitor/WatchState": frozenset({_R.ORCHESTRATOR, _R.GATEWAY, _R.ADMIN}),
    "/edgesplit.v1.NodeAgent/Prepare": frozenset({_R.BROADCASTER}),
    "/edgesplit.v1.NodeAgent/Commit": frozenset({_R.BROADCASTER}),
    "/edgesplit.v1.NodeAgent/Abort": frozenset({_R.BROADCASTER}),
    # Route peers of the frame's epoch, src = caller: checked by the stage. Frames,
    # failures and session ends all travel on this one stream.
    "/edgesplit.v1.NodeAgent/Link": frozenset({_R.NODE}),
    "/edgesplit.v1.NodeAgent/GetInfo": frozenset({_R.BROADCASTER, _R.NODE, _R.ADMIN}),
    "/edgesplit.v1.NodeAgent/Probe": frozenset({_R.NODE}),
    # Link salts; the hello's node id = caller: checked by the servicer.
    "/edgesplit.v1.NodeAgent/Hello": frozenset({_R.NODE}),
    "/edgesplit.v1.TestbedAdmin/SetConditions": frozenset({_R.ADMIN}),
    "/edgesplit.v1.TestbedAdmin/GetConditions": frozenset({_R.ADMIN}),
    "/edgesplit.v1.Orchestrator/Status": frozenset({_R.ADMIN, _R.GATEWAY}),
    "/edgesplit.v1.Orchestrator/History": frozenset({_R.ADMIN}),
    "/edgesplit.v1.Orchestrator/EnsureRoute": frozenset({_R.NODE}),
    "/edgesplit.v1.SplitReviser/Revise": frozenset({_R.ORCHESTRATOR, _R.ADMIN}),
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": frozenset({_R.ADMIN}),
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo": frozenset({_R.ADMIN}),
}


def identities(auth_context: Mapping[str, Iterable[bytes | str]]) -> tuple[Identity, ...]:
    """Every edgesplit identity in a verified peer certificate's SANs."""
    found = []
    for raw in auth_context.get(_URI_KEY, ()):
        ident = Identity.parse(raw.decode() if isinstance(raw, bytes) else raw)
        if ident is not None:
            found.append(ident)
    return tuple(found)


def caller(context: Any) -> Identity | None:
    """The caller's identity (the first edgesplit SAN of its certificate)."""
    found = identities(context.auth_context() or {})
    return found[0] if found else None


def decide(method: str, callers: tuple[Identity, ...], enforce: bool = True
           ) -> tuple[grpc.StatusCode, str] | None:
    """None when the call may go on; else the status and the refusal reason."""
    if not enforce:
        return None
    allowed = POLICY.get(method)
    if allowed is None:
        return grpc.StatusCode.PERMISSION_DENIED, "unlisted_method"
    if allowed == frozenset(Role):
        return None
    if not callers:
        return grpc.StatusCode.UNAUTHENTICATED, "no_certificate"
    if not any(c.role in allowed for c in callers):
        return grpc.StatusCode.PERMISSION_DENIED, "wrong_role"
    return None


class AuthorizationInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Enforces :data:`POLICY` before any handler runs.

    ``enforce=False`` is for explicitly insecure (plaintext, loopback-only)
    servers, where no caller can prove who it is.
    """

    def __init__(self, enforce: bool = True) -> None:
        self.enforce = enforce

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return handler
        return _guarded(handler, details.method, self.enforce)


async def _refuse(context: Any, method: str, enforce: bool, request: Any) -> bool:
    verdict = decide(method, identities(context.auth_context() or {}), enforce)
    if verdict is None and request is MALFORMED:
        verdict = grpc.StatusCode.INVALID_ARGUMENT, "malformed"
    if verdict is None:
        return False
    code, reason = verdict
    DENIED.labels(method, reason).inc()
    await context.abort(code, f"{method}: {reason.replace('_', ' ')}")
    return True


async def _refuse_malformed(item: Any, context: Any, method: str) -> Any:
    """``item``, or the call refused if it did not parse."""
    if item is MALFORMED:
        DENIED.labels(method, "malformed").inc()
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{method}: malformed")
    return item


async def _parsed(requests: Any, context: Any, method: str) -> Any:
    """A request stream that refuses the call at its first malformed message."""
    async for item in requests:
        yield await _refuse_malformed(item, context, method)


class _ParsingContext:
    """The servicer's context for a request stream: ``read()`` refuses the call
    at the first malformed message (a servicer may read instead of iterating)."""

    def __init__(self, context: Any, method: str) -> None:
        self._context, self._method = context, method

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    async def read(self) -> Any:
        return await _refuse_malformed(await self._context.read(), self._context, self._method)


def _checked(request: Any, context: Any, method: str) -> tuple[Any, Any]:
    """The request and context a handler sees: a request stream checked as it is read."""
    if hasattr(request, "__aiter__"):
        return _parsed(request, context, method), _ParsingContext(context, method)
    return request, context


def _guarded(handler: grpc.RpcMethodHandler, method: str, enforce: bool
             ) -> grpc.RpcMethodHandler:
    return rewrap(handler, lambda fn: _wrap_unary(fn, method, enforce),
                  lambda fn: _wrap_stream(fn, method, enforce), tolerate_malformed=True)


def _wrap_unary(fn: Any, method: str, enforce: bool) -> Any:
    async def guarded(request: Any, context: Any) -> Any:
        if await _refuse(context, method, enforce, request):
            return None
        return await call_unary(fn, *_checked(request, context, method))

    return guarded


def _wrap_stream(fn: Any, method: str, enforce: bool) -> Any:
    async def guarded(request: Any, context: Any) -> Any:
        if await _refuse(context, method, enforce, request):
            return
        async for item in replies(fn, *_checked(request, context, method)):
            yield item

    return guarded
