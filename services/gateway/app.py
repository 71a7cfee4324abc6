"""The Starlette application: OpenAI routes, health, readiness, metrics."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from edgesplit.rpc.transport import Transport
from services.gateway import metrics as m
from services.gateway.auth import Client, KeyBook
from services.gateway.config import GatewayConfig
from services.gateway.engine import Generation, Params
from services.gateway.entries import EntryPool
from services.gateway.errors import APIError, invalid
from services.gateway.prompts import chat_ids, completion_ids, load_tokenizer
from services.gateway.schema import (
    ChatRequest,
    CompletionRequest,
    Reply,
    model_not_found,
    parse,
)

log = logging.getLogger(__name__)
PRIVACY_HEADER = "x-edgesplit-privacy"


def served_model_name(config: GatewayConfig) -> str:
    return config.model_name or Path(config.model_dir.rstrip("/")).name or "edgesplit"


class Gateway:
    """State shared by the routes: config, keys, entries, tokenizer."""

    def __init__(self, config: GatewayConfig, transport: Transport) -> None:
        self.config = config
        self.keys = KeyBook.load(config.api_keys, config.max_concurrent)
        self.pool = EntryPool(config, transport)
        self.model = served_model_name(config)
        self.tokenizer: Any = None

    # ---- the shared path of both endpoints ------------------------------------------
    def _privacy(self, request: Request, body: CompletionRequest | ChatRequest) -> str | None:
        """"low", "high", or None when the client states none: then the entry's
        configured default applies (PRIVACY_UNSPECIFIED), never silently low."""
        raw = request.headers.get(PRIVACY_HEADER, body.privacy)
        if raw is None:
            return None
        raw = raw.strip().lower()
        if raw not in ("low", "high"):
            raise invalid(f"{PRIVACY_HEADER} must be low or high, not {raw!r}", "privacy")
        return raw

    def _params(self, request: Request, body: CompletionRequest | ChatRequest,
                ids: list[int], limit: int | None) -> Params:
        return Params(
            prompt_ids=tuple(ids), max_tokens=limit or self.config.default_max_tokens,
            temperature=1.0 if body.temperature is None else body.temperature,
            top_p=1.0 if body.top_p is None else body.top_p,
            # OpenAI's default is a fresh sample each time; a given seed repeats.
            seed=secrets.randbits(63) if body.seed is None else body.seed,
            stop=body.stops(), privacy=self._privacy(request, body))

    async def serve(self, request: Request, client: Client, kind: str,
                    body: CompletionRequest | ChatRequest, params: Params) -> Response:
        arrived = time.perf_counter()
        self.keys.acquire(client, self.config.retry_after_s)
        gen = Generation(self.pool, client, params, self.config.request_timeout_s,
                         self.config.failover_attempts, self.config.retry_after_s)
        m.IN_FLIGHT.inc()
        try:
            await gen.start()
        except BaseException:
            m.IN_FLIGHT.dec()
            self.keys.release(client)
            raise
        m.TTFT.observe(time.perf_counter() - arrived)
        m.PROMPT_TOKENS.labels(client.name).inc(len(params.prompt_ids))
        reply = Reply("completion" if kind == "completions" else "chat", gen.request_id,
                      self.model)
        assert gen.entry is not None
        headers = {"x-edgesplit-entry": gen.entry.node_id,
                   "x-request-id": gen.request_id}

        released = False

        async def done() -> None:  # exactly once, however the request ends
            nonlocal released
            if not released:
                released = True
                await gen.aclose()
                m.IN_FLIGHT.dec()
                self.keys.release(client)

        if not body.stream:
            try:
                text, finish = await gen.collect()
            finally:
                await done()
            return JSONResponse(reply.whole(text, finish, len(params.prompt_ids),
                                            len(gen.tokens)), headers=headers)
        return _EventStream(self._events(gen, reply, body.include_usage()), done,
                            media_type="text/event-stream",
                            headers={**headers, "cache-control": "no-cache"})

    async def _events(self, gen: Generation, reply: Reply, include_usage: bool
                      ) -> AsyncIterator[str]:
        first = True
        try:
            async for piece in gen.pieces():
                yield _sse(reply.chunk(piece.text, piece.finish_reason, first))
                first = False
            if include_usage:
                yield _sse(reply.usage_chunk(len(gen.params.prompt_ids), len(gen.tokens)))
        except APIError as exc:  # headers are out: the error travels as an event
            log.warning("request %s ended with %s", gen.request_id, exc)
            yield _sse(exc.body())
        yield "data: [DONE]\n\n"

    # ---- routes ----------------------------------------------------------------------
    async def _body(self, request: Request) -> Any:
        """The JSON body, read no further than ``max_body_bytes``."""
        limit, data = self.config.max_body_bytes, bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > limit:
                raise APIError(413, f"request body over {limit} bytes", "invalid_request_error",
                               "body_too_large")
        try:
            return json.loads(data)
        except ValueError:
            raise invalid("the body is not valid JSON") from None

    def _ready_check(self) -> None:
        if self.tokenizer is None:
            raise APIError(503, "the tokenizer is still loading", "service_unavailable",
                           "starting", headers={"Retry-After": "1"})

    async def _generate(self, request: Request, kind: str) -> Response:
        client = self.keys.authenticate(request.headers.get("authorization"))
        raw = await self._body(request)
        body: CompletionRequest | ChatRequest
        if kind == "completions":
            body = parse(CompletionRequest, raw)
        else:
            body = parse(ChatRequest, raw)
        if body.model != self.model:
            raise model_not_found(body.model, self.model)
        self._ready_check()
        if isinstance(body, CompletionRequest):
            ids, limit = completion_ids(self.tokenizer, body.prompt), body.max_tokens
        else:
            ids = chat_ids(self.tokenizer, [msg.model_dump() for msg in body.messages])
            limit = body.limit()
        return await self.serve(request, client, kind, body,
                                self._params(request, body, ids, limit))

    async def completions(self, request: Request) -> Response:
        return await self._generate(request, "completions")

    async def chat(self, request: Request) -> Response:
        return await self._generate(request, "chat")

    async def models(self, request: Request) -> Response:
        self.keys.authenticate(request.headers.get("authorization"))
        return JSONResponse({"object": "list", "data": [
            {"id": self.model, "object": "model", "created": 0, "owned_by": "edgesplit"}]})

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        healthy = [e.node_id for e in self.pool.healthy()]
        m.HEALTHY_ENTRIES.set(len(healthy))
        ready = self.tokenizer is not None and bool(healthy)
        return JSONResponse({"ready": ready, "tokenizer": self.tokenizer is not None,
                             "healthy_entries": healthy, "monitor_ok": self.pool.monitor_ok},
                            status_code=200 if ready else 503)

    async def metrics(self, request: Request) -> Response:
        m.HEALTHY_ENTRIES.set(len(self.pool.healthy()))
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        refresher = asyncio.create_task(self.pool.run())
        self.tokenizer = await asyncio.get_running_loop().run_in_executor(
            None, load_tokenizer, self.config.model_dir)
        try:
            yield
        finally:
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher
            await self.pool.close()


class _EventStream(StreamingResponse):
    """A stream that runs ``on_close`` however it ends: finished, failed, or
    the client gone before the first event (then the body generator never
    starts, so its own ``finally`` would never run)."""

    def __init__(self, content: AsyncIterator[str], on_close: Any, **kw: Any) -> None:
        super().__init__(content, **kw)
        self.on_close = on_close

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.on_close()


def _sse(obj: Any) -> str:
    return f"data: {json.dumps(obj, separators=(',', ':'))}\n\n"


_ENDPOINTS = {"/v1/completions": "completions", "/v1/chat/completions": "chat",
              "/v1/models": "models"}


def _count(request: Request, status: int) -> None:
    endpoint = _ENDPOINTS.get(request.url.path)
    if endpoint:
        m.REQUESTS.labels(endpoint, str(status)).inc()


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    _count(request, exc.status)
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    err = APIError(exc.status_code, str(exc.detail), "invalid_request_error",
                   "not_found" if exc.status_code == 404 else "method_not_allowed")
    return JSONResponse(err.body(), status_code=exc.status_code)


def create_app(config: GatewayConfig, transport: Transport) -> Starlette:
    gw = Gateway(config, transport)

    def counted(handler: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            response: Response = await handler(request)
            _count(request, response.status_code)
            return response
        return endpoint

    routes = [
        Route("/v1/completions", counted(gw.completions), methods=["POST"]),
        Route("/v1/chat/completions", counted(gw.chat), methods=["POST"]),
        Route("/v1/models", counted(gw.models), methods=["GET"]),
        Route("/healthz", gw.healthz, methods=["GET"]),
        Route("/readyz", gw.readyz, methods=["GET"]),
        Route("/metrics", gw.metrics, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=gw.lifespan,
                    exception_handlers={APIError: _api_error, HTTPException: _http_error})
    app.state.gateway = gw
    return app
