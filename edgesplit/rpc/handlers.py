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


def rewrap(handler: grpc.RpcMethodHandler, unary: Callable[[Any], Any],
           stream: Callable[[Any], Any]) -> grpc.RpcMethodHandler:
    """``handler`` with its behaviour wrapped: ``unary(fn)`` for methods that
    answer once, ``stream(fn)`` for methods that answer with a stream."""
    for kind, make in _MAKERS.items():
        fn = getattr(handler, kind)
        if fn is not None:
            wrapped = stream(fn) if kind.endswith("_stream") else unary(fn)
            return make(wrapped, request_deserializer=handler.request_deserializer,
                        response_serializer=handler.response_serializer)
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
