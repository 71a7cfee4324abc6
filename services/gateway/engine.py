"""One request's generation, across entry nodes.

The first token is awaited before the HTTP reply starts, so everything that
fails early (bad input, privacy, no entry, quota on the entry) gets its own
HTTP status even for ``stream: true``. The gateway keeps the request's token
history; when the entry fails mid-stream it asks another entry to continue
from prompt + tokens so far (greedy output is the same as without the
failure; sampled output continues from a fresh sampler), and when no entry
is left the stream ends with an error event — it never hangs, because every
call carries the request deadline.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc

from edgesplit.errors import PRIVACY_UNSATISFIABLE
from edgesplit.rpc.errors import error_details
from edgesplit.v1 import common_pb2, inference_pb2
from services.gateway import metrics as m
from services.gateway.auth import Client
from services.gateway.entries import Entry, EntryPool
from services.gateway.errors import FAILOVER, APIError, from_rpc_error

log = logging.getLogger(__name__)
FINISH = {inference_pb2.FINISH_REASON_EOS: "stop", inference_pb2.FINISH_REASON_STOP: "stop",
          inference_pb2.FINISH_REASON_LENGTH: "length"}  # ours -> OpenAI's

_PRIVACY = {None: common_pb2.PRIVACY_UNSPECIFIED, "low": common_pb2.PRIVACY_LOW,
            "high": common_pb2.PRIVACY_HIGH}


@dataclass(frozen=True, slots=True)
class Params:
    prompt_ids: tuple[int, ...]
    max_tokens: int
    temperature: float
    top_p: float
    seed: int
    stop: tuple[str, ...] = ()
    privacy: str | None = None  # "low", "high"; None: the entry's default


@dataclass(slots=True)
class Piece:
    text: str
    finish_reason: str | None = None


class StopText:
    """Cut the answer at the first stop string; while the text ends in what
    could be the start of one, hold that tail back."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = tuple(s for s in stops if s)
        self.text = ""
        self.sent = 0

    def feed(self, delta: str) -> tuple[str, bool]:
        """Text that may go out now, and whether a stop string was hit."""
        self.text += delta
        hits = [i for i in (self.text.find(s) for s in self.stops) if i >= 0]
        if hits:
            out, self.sent = self.text[self.sent:min(hits)], len(self.text)
            return out, True
        hold = max((k for s in self.stops for k in range(1, len(s))
                    if self.text.endswith(s[:k])), default=0)
        end = max(self.sent, len(self.text) - hold)
        out, self.sent = self.text[self.sent:end], end
        return out, False

    def rest(self) -> str:
        out, self.sent = self.text[self.sent:], len(self.text)
        return out


@dataclass
class Generation:
    pool: EntryPool
    client: Client
    params: Params
    timeout_s: float
    attempts: int
    retry_after_s: int
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    tokens: list[int] = field(default_factory=list)
    entry: Entry | None = None
    entries_used: list[str] = field(default_factory=list)
    _call: grpc.aio.UnaryStreamCall | None = None
    _first: inference_pb2.GenerateResponse | None = None
    _tried: set[str] = field(default_factory=set)

    # ---- opening a call on some entry ------------------------------------------------
    def _request(self) -> inference_pb2.GenerateRequest:
        p = self.params
        return inference_pb2.GenerateRequest(
            token_ids=inference_pb2.TokenIds(ids=[*p.prompt_ids, *self.tokens]),
            max_new_tokens=p.max_tokens - len(self.tokens),
            sampling=inference_pb2.SamplingParams(temperature=p.temperature, top_p=p.top_p,
                                                  seed=p.seed),
            privacy=_PRIVACY[p.privacy],
            request_id=f"{self.request_id}.{len(self.entries_used)}")

    def _nothing_left(self, last: grpc.aio.AioRpcError | None) -> APIError:
        if last is not None:
            err = from_rpc_error(last, self.retry_after_s)
            if error_details(last).reason == PRIVACY_UNSATISFIABLE:  # the entry's verdict
                err.code, err.param = "privacy_unsatisfiable", "privacy"
            return err
        if self.pool.healthy() and not self._tried:
            return APIError(403, f"client {self.client.name!r} may use none of the healthy "
                            "entry nodes", "permission_error", "entry_not_permitted")
        return APIError(503, "no healthy entry node", "service_unavailable", "no_entry",
                        headers={"Retry-After": str(self.retry_after_s)})

    async def _open(self) -> None:
        """A call whose first reply has arrived, on the best entry that answers."""
        last: grpc.aio.AioRpcError | None = None
        while len(self._tried) < self.attempts:
            candidates = self.pool.candidates(self.client, self._tried)
            if not candidates:
                break
            entry = candidates[0]
            self._tried.add(entry.node_id)
            call = self.pool.stub(entry).Generate(self._request(), timeout=self.timeout_s)
            self.pool.started(entry.node_id)
            try:
                first = await call.read()
            except grpc.aio.AioRpcError as exc:
                self.pool.finished(entry.node_id)
                last = exc
                if exc.code() not in FAILOVER:
                    raise self._nothing_left(exc) from None
                if exc.code() in (grpc.StatusCode.UNAVAILABLE,
                                  grpc.StatusCode.DEADLINE_EXCEEDED):
                    self.pool.bench(entry.node_id)
                log.info("request %s: entry %s: %s; trying another", self.request_id,
                         entry.node_id, exc.code().name)
                continue
            if first is grpc.aio.EOF:  # a stream without tokens: a broken entry
                self.pool.finished(entry.node_id)
                continue
            if self.entries_used:
                m.FAILOVERS.inc()
            self.entry, self._call, self._first = entry, call, first
            self.entries_used.append(entry.node_id)
            return
        raise self._nothing_left(last)

    async def start(self) -> None:
        await self._open()

    # ---- the answer ----------------------------------------------------------------
    async def _replies(self) -> AsyncIterator[inference_pb2.GenerateResponse]:
        """Every token's reply, continuing on another entry when one fails."""
        while True:
            assert self._call is not None and self.entry is not None
            reply = self._first
            self._first = None
            try:
                while reply is not None:
                    if reply is grpc.aio.EOF:
                        raise APIError(502, "entry ended the stream without finishing",
                                       "server_error", "incomplete_stream")
                    self.tokens.append(reply.token_id)
                    yield reply
                    if reply.finish_reason:
                        return
                    reply = await self._call.read()
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in FAILOVER:
                    raise from_rpc_error(exc, self.retry_after_s) from None
                log.warning("request %s: entry %s failed mid-stream (%s) after %d tokens; "
                            "failing over", self.request_id, self.entry.node_id,
                            exc.code().name, len(self.tokens))
                self.pool.bench(self.entry.node_id)
                self._release()
                await self._open()

    async def pieces(self) -> AsyncIterator[Piece]:
        """Text deltas, the last one with its finish reason ("stop" or "length")."""
        stop = StopText(self.params.stop)
        try:
            async for reply in self._replies():
                text, hit = stop.feed(reply.text)
                m.TOKENS.labels(self.client.name).inc()
                if hit:
                    yield Piece(text, "stop")
                    return
                if reply.finish_reason:
                    yield Piece(text + stop.rest(), FINISH.get(reply.finish_reason, "stop"))
                    return
                if text or len(self.tokens) == 1:  # the first token always: TTFT is visible
                    yield Piece(text)
        finally:
            await self.aclose()

    async def collect(self) -> tuple[str, str]:
        """The whole answer and its finish reason (non-streaming replies)."""
        parts, finish = [], "stop"
        async for piece in self.pieces():
            parts.append(piece.text)
            finish = piece.finish_reason or finish
        return "".join(parts), finish

    def _release(self) -> None:
        if self._call is not None and self.entry is not None:
            self._call.cancel()
            self.pool.finished(self.entry.node_id)
        self._call = None

    async def aclose(self) -> None:
        self._release()
