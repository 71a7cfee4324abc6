"""``Inference.Generate`` on an entry node.

Tokenizer, embedding, head and sampling run here only; the ring carries hidden
states. The entry keeps each request's token history, so when a step fails or
the session's epoch is gone it replays the history on the current route (new
hops rebuild their KV caches) and the client's stream just continues.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from edgesplit.core.trust import listed, untrusted_sensitive
from edgesplit.core.types import Route
from edgesplit.model.base import SamplingParams, WireTensor
from edgesplit.rpc.errors import InvalidRequest, Precondition, TooLarge, Unavailable, maps_errors
from edgesplit.v1 import common_pb2, inference_pb2, inference_pb2_grpc
from edgesplit.v1 import node_agent_pb2 as na
from services.node_agent import metrics as m
from services.node_agent.config import NodeAgentConfig
from services.node_agent.dataplane import DataPlane, StepFailed
from services.node_agent.epochs import EpochState
from services.node_agent.shards import model_files_dir

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 4  # replays of one request before it fails UNAVAILABLE


def privacy_ok(es: EpochState, route: Route) -> bool:
    """Sensitive parts only on nodes the signed assignment lists as trusted
    (the entry too): the one check of ``edgesplit.core.trust``."""
    return not untrusted_sensitive(route, es.assignment.privacy_depth, listed(es.trusted))


class IncrementalText:
    """Text of each new token without decoding the whole answer every step
    (that is quadratic on the per-token path): decode a short window that
    starts a few tokens back, so merges and multi-byte characters still come
    out right; hold text back while it ends in a partial UTF-8 character."""

    def __init__(self, tokenizer: Any, start: int) -> None:
        self.tok = tokenizer
        self.prefix = self.read = start  # window start; first token not yet emitted

    def next(self, ids: list[int]) -> str:
        before = self.tok.decode(ids[self.prefix:self.read], skip_special_tokens=True)
        now = self.tok.decode(ids[self.prefix:], skip_special_tokens=True)
        if len(now) <= len(before) or now.endswith("\ufffd"):
            return ""
        self.prefix, self.read = self.read, len(ids)
        return now[len(before):]


class InferenceServicer(inference_pb2_grpc.InferenceServicer):
    def __init__(self, config: NodeAgentConfig, dataplane: DataPlane) -> None:
        self.config = config
        self.dp = dataplane
        self._tokenizer: Any = None
        self._slots = asyncio.Semaphore(config.max_sessions)

    async def tokenizer(self) -> Any:
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            loop = asyncio.get_running_loop()
            # hook: the local shard dir, else the fetched meta shard (shards.py)
            files = model_files_dir(self.config, self.dp.book.committed)
            self._tokenizer = await loop.run_in_executor(
                None, lambda: AutoTokenizer.from_pretrained(files))
        return self._tokenizer

    def _route(self, privacy: int, epoch: int | None = None) -> tuple[EpochState, Route]:
        es = self.dp.book.get(epoch) if epoch is not None else self.dp.book.committed
        if es is None:
            raise Unavailable("no committed epoch yet on this entry node")
        route = es.routes.get(self.config.node_id)
        if route is None:
            raise Precondition(f"{self.config.node_id} is not an entry node in epoch {es.epoch}")
        if privacy == common_pb2.PRIVACY_HIGH and not privacy_ok(es, route):
            raise Precondition("privacy=high: the route puts sensitive layers on nodes "
                               "this entry does not trust")
        return es, route

    async def _private_route(self, privacy: int) -> tuple[EpochState, Route]:
        """The newest route the request may use. A privacy=high request with no
        private route asks the orchestrator to make one, then waits for its
        epoch; FAILED_PRECONDITION only when no plan can satisfy it (or nobody
        can be asked). Also used on replay: the failover plan may differ."""
        try:
            return self._route(privacy)
        except Precondition:
            if privacy != common_pb2.PRIVACY_HIGH or not self.config.orchestrator:
                raise
        from edgesplit.v1 import orchestrator_pb2, orchestrator_pb2_grpc

        channel = self.dp.channel(self.config.orchestrator)
        reply = await orchestrator_pb2_grpc.OrchestratorStub(channel).EnsureRoute(
            orchestrator_pb2.EnsureRouteRequest(entry=self.config.node_id, privacy=privacy),
            timeout=self.config.step_timeout_s)  # a FAILED_PRECONDITION passes through
        deadline = time.monotonic() + self.config.step_timeout_s
        while time.monotonic() < deadline:
            committed = self.dp.book.committed
            if committed is not None and committed.epoch >= reply.epoch:
                break
            await asyncio.sleep(0.02)
        return self._route(privacy)

    async def _prompt_ids(self, request: inference_pb2.GenerateRequest) -> list[int]:
        if bool(request.prompt) == bool(request.token_ids):
            raise InvalidRequest("give exactly one of prompt or token_ids")
        if request.token_ids:
            return list(request.token_ids)
        tok = await self.tokenizer()
        ids: list[int] = tok.encode(request.prompt)
        if not ids:
            raise InvalidRequest("prompt tokenizes to nothing")
        return ids

    @maps_errors
    async def Generate(self, request: inference_pb2.GenerateRequest,
                       context: Any) -> AsyncIterator[inference_pb2.GenerateResponse]:
        arrived = time.perf_counter()
        max_new = request.max_new_tokens or 16
        if max_new > self.config.max_new_tokens:
            raise InvalidRequest(f"max_new_tokens {max_new} > {self.config.max_new_tokens}")
        s = request.sampling
        try:
            params = SamplingParams(s.temperature, s.top_p or 1.0, s.seed)
        except ValueError as exc:
            raise InvalidRequest(f"sampling: {exc}") from exc
        es, route = await self._private_route(request.privacy)  # before tokenizing
        if self._slots.locked():
            raise TooLarge(f"entry is serving {self.config.max_sessions} sessions already")
        async with self._slots:
            outcome = "failed"
            try:
                async for reply in self._generate(request, params, max_new, es, route, arrived):
                    yield reply
                outcome = "ok"
            finally:
                m.REQUESTS.labels(outcome).inc()
                m.REQUEST_SECONDS.labels(outcome).observe(time.perf_counter() - arrived)

    async def _generate(self, request: inference_pb2.GenerateRequest, params: SamplingParams,
                        max_new: int, es: EpochState, route: Route, arrived: float
                        ) -> AsyncIterator[inference_pb2.GenerateResponse]:
        rid = request.request_id or uuid.uuid4().hex[:16]
        history = await self._prompt_ids(request)
        tok = await self.tokenizer()
        head = self.dp.head_runner(es, route)
        if any(t < 0 or t >= head.vocab_size for t in history):
            raise InvalidRequest(f"token ids must be in [0, {head.vocab_size})")
        if len(history) + max_new > head.max_length:
            raise InvalidRequest(f"prompt {len(history)} + {max_new} new tokens exceed the "
                                 f"context of {head.max_length}")
        stops = set(request.stop_token_ids)
        eos = {tok.eos_token_id} if tok.eos_token_id is not None else set()
        sampler = head.new_sampler(SamplingParams(params.temperature, params.top_p,
                                                  params.seed, tuple(stops | eos)))
        prompt_len = len(history)
        m.PROMPT_TOKENS.inc(prompt_len)
        detok = IncrementalText(tok, prompt_len)
        attempt, cached, ring_step = 0, 0, 0
        session = f"{rid}.{attempt}"
        started = time.perf_counter()
        latencies: list[float] = []  # hook: TTFT then each step, for the monitor's report
        ok: bool | None = None  # hook: True when the loop ends normally, False on an error
        try:
            while len(history) - prompt_len < max_new:
                if self.dp.book.get(es.epoch) is None:
                    # The session's epoch was retired: replay on the newest route.
                    self._end_everywhere(es, route, session)
                    es, route = await self._private_route(request.privacy)
                    head = self.dp.head_runner(es, route)
                    attempt += 1
                    session, cached, ring_step = f"{rid}.{attempt}", 0, 0
                    m.REPLAYS.inc()
                step_start = time.perf_counter()
                if ring_step == 0 and attempt == 0:
                    m.QUEUE_SECONDS.observe(step_start - arrived)
                try:
                    out = await self.dp.ring_step(es, route, session, ring_step,
                                                  history[cached:], cached,
                                                  self.config.step_timeout_s)
                except StepFailed as exc:
                    attempt += 1
                    if attempt >= MAX_ATTEMPTS:
                        raise Unavailable(f"step failed {attempt} times: {exc}") from exc
                    log.warning("request %s: %s; replaying", rid, exc)
                    await self._wait_for_new_epoch(es.epoch)
                    self._end_everywhere(es, route, session)
                    es, route = await self._private_route(request.privacy)
                    head = self.dp.head_runner(es, route)
                    session, cached, ring_step = f"{rid}.{attempt}", 0, 0
                    m.REPLAYS.inc()
                    continue
                cached, ring_step = len(history), ring_step + 1
                token = await self.dp.compute(lambda h=head, o=out: sampler.choose(
                    h.head(h.decode_hidden(o) if isinstance(o, WireTensor) else o)),
                    "head", runner=head, tokens=1)  # hook: head cost for the report
                history.append(token)
                elapsed = time.perf_counter() - (started if len(history) - prompt_len == 1
                                                 else step_start)
                (m.TTFT if len(history) - prompt_len == 1 else m.STEP).observe(elapsed)
                latencies.append(elapsed)
                m.TOKENS.inc()
                delta = detok.next(history)
                finish = ("eos" if token in eos else "stop" if token in stops else
                          "length" if len(history) - prompt_len >= max_new else "")
                yield inference_pb2.GenerateResponse(
                    token_id=token, text=delta, index=len(history) - prompt_len - 1,
                    finish_reason=finish, epoch=es.epoch, step_latency_s=elapsed,
                    request_id=rid)
                if finish:
                    break
            ok = True
        except Exception:
            ok = False
            raise
        finally:
            self._end_everywhere(es, route, session)
            # hook: a cancelled call (ok None) is no sample; a failed one is an SLA miss
            if self.dp.request_observer is not None and ok is not None:
                ttft = latencies[0] if latencies else time.perf_counter() - started
                self.dp.request_observer(ttft, latencies[1:], ok)

    async def _wait_for_new_epoch(self, failed_epoch: int) -> None:
        """After a failure give the control plane a moment to fail over."""
        deadline = time.monotonic() + self.config.step_timeout_s
        while time.monotonic() < deadline:
            committed = self.dp.book.committed
            if committed is not None and committed.epoch != failed_epoch:
                return
            await asyncio.sleep(0.05)

    def _end_everywhere(self, es: EpochState, route: Route, session: str) -> None:
        for runner in {id(r): r for r in es.runners.values()}.values():
            runner.end_session(session)
        for node in {seg.node for seg in route.segments} - {self.config.node_id}:
            link = es.peers.get(node)
            if link is not None:
                self.dp.spawn(self._end_remote(link.address, session, es.epoch))

    async def _end_remote(self, address: str, session: str, epoch: int) -> None:
        try:
            await self.dp.stub(address).EndSession(
                na.EndSessionRequest(session_id=session, epoch=epoch),
                timeout=self.config.rpc_timeout_s)
        except Exception as exc:  # noqa: BLE001 - idle eviction frees it anyway
            log.debug("EndSession on %s failed: %s", address, exc)
