"""What the server interceptors share: rebuilding a method handler around a
wrapped behaviour, and running any shape of handler to its replies."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

_MAKERS = {"unary_unary": grpc.unary_unary_rpc_method_handler,
           "unary_stream": grpc.unary_stream_rpc_method_handler,
           "stream_unary": grpc.stream_unary_rpc_method_handler,
           "stream_stream": grpc.stream_stream_rpc_method_handler}


class _Malformed:
    """Stands for a request whose bytes did not parse (see :func:`tolerant`)."""

    def __repr__(self) -> str:
        return "MALFORMED"


MALFORMED: Any = _Malformed()


def tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """``deserializer`` returning :data:`MALFORMED` instead of raising: gRPC
    would otherwise answer UNKNOWN with the parser's exception text and log a
    traceback for every bad request. The handler's wrapper refuses it instead."""
    if deserializer is None:
        return None

    def parse(raw: bytes) -> Any:
        try:
            return deserializer(raw)
        except Exception:  # noqa: BLE001 - any parse failure is the caller's malformed bytes
            return MALFORMED

    return parse


def rewrap(handler: grpc.RpcMethodHandler, unary: Callable[[Any], Any],
           stream: Callable[[Any], Any], *, tolerate_malformed: bool = False
           ) -> grpc.RpcMethodHandler:
    """``handler`` with its behaviour wrapped: ``unary(fn)`` for methods that
    answer once, ``stream(fn)`` for methods that answer with a stream.
    ``tolerate_malformed``: requests that do not parse arrive as :data:`MALFORMED`."""
    for kind, make in _MAKERS.items():
        fn = getattr(handler, kind)
        if fn is not None:
            wrapped = stream(fn) if kind.endswith("_stream") else unary(fn)
            parse = handler.request_deserializer
            return make(wrapped, request_deserializer=tolerant(parse) if tolerate_malformed
                        else parse, response_serializer=handler.response_serializer)
    return handler


async def call_unary(fn: Any, request: Any, context: Any) -> Any:
    result = fn(request, context)
    return await result if inspect.isawaitable(result) else result


async def replies(fn: Any, request: Any, context: Any) -> AsyncIterator[Any]:
    """The replies of a streaming handler, whether it is an async generator, a
    plain iterator or a coroutine that writes them itself."""
    items = fn(request, context)
    if inspect.isawaitable(items):
        await items
    elif hasattr(items, "__aiter__"):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item
