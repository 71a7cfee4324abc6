"""``Inference.Generate`` on an entry node: decode and check the request,
delegate to the entry (``entry.py``: ring steps and replay), encode the
stream. Tokenizer and detokenisation live here; raw tokens never leave.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, TypeVar

from edgesplit.core.types import Privacy
from edgesplit.model.base import SamplingParams
from edgesplit.rpc.authz import Role, caller
from edgesplit.rpc.convert import PRIVACY, duration
from edgesplit.rpc.errors import InvalidRequest, maps_errors
from edgesplit.v1 import inference_pb2, inference_pb2_grpc
from services.node_agent import metrics as m
from services.node_agent.admission import (
    AdmissionLimits,
    RateLimitedLog,
    Rejected,
    SessionQuota,
    check_prompt,
    check_request_id,
    check_temperature,
    client_key,
    new_session_id,
)
from services.node_agent.config import NodeAgentConfig
from services.node_agent.entry import Entry
from services.node_agent.queue import AdmissionQueue, Overloaded, QueueLimits
from services.node_agent.shards import model_files_dir

log = logging.getLogger(__name__)

T = TypeVar("T")


class IncrementalText:
    """Text of each new token without decoding the whole answer every step
    (that is quadratic on the per-token path): decode a short window that
    starts a few tokens back, so merges and multi-byte characters still come
    out right; hold text back while it ends in a partial UTF-8 character."""

    def __init__(self, tokenizer: Any, start: int) -> None:
        self.tok = tokenizer
        self.prefix = self.read = start  # window start; first token not yet emitted

    def next(self, ids: list[int], end: int | None = None) -> str:
        """Text that ``ids[:end]`` adds (``end``: the ids produced so far)."""
        end = len(ids) if end is None else end
        before = self.tok.decode(ids[self.prefix:self.read], skip_special_tokens=True)
        now = self.tok.decode(ids[self.prefix:end], skip_special_tokens=True)
        if len(now) <= len(before) or now.endswith("\ufffd"):
            return ""
        self.prefix, self.read = self.read, end
        return now[len(before):]


async def ahead(items: AsyncIterator[T], depth: int) -> AsyncIterator[T]:
    """``items``, produced up to ``depth`` ahead of the consumer: the next ring
    step starts while this token's reply is still being written to the client."""
    if depth <= 0:
        async for item in items:
            yield item
        return
    queue: asyncio.Queue[tuple[bool, Any]] = asyncio.Queue(depth)

    async def produce() -> None:
        try:
            async for item in items:
                await queue.put((True, item))
            await queue.put((False, None))
        except Exception as exc:  # noqa: BLE001 - re-raised in the consumer
            await queue.put((False, exc))

    task = asyncio.get_running_loop().create_task(produce())
    try:
        while True:
            more, item = await queue.get()
            if not more:
                if item is not None:
                    raise item
                return
            yield item
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await items.aclose()  # type: ignore[attr-defined]


class InferenceServicer(inference_pb2_grpc.InferenceServicer):
    def __init__(self, config: NodeAgentConfig, entry: Entry,
                 queue: AdmissionQueue | None = None) -> None:
        self.config = config
        self.entry = entry
        self._tokenizer: Any = None
        self.queue = queue or AdmissionQueue(QueueLimits(
            config.max_sessions, config.max_waiting, config.max_queue_wait_s))
        self.limits = AdmissionLimits(config.max_prompt_bytes, config.max_prompt_tokens,
                                      config.min_temperature, config.max_sessions_per_client)
        self.quota = SessionQuota(config.max_sessions_per_client)
        self._malformed = RateLimitedLog(log)

    async def tokenizer(self) -> Any:
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            loop = asyncio.get_running_loop()
            # hook: the local shard dir, else the fetched meta shard (shards.py)
            files = model_files_dir(self.config, self.entry.book.committed)
            self._tokenizer = await loop.run_in_executor(
                None, lambda: AutoTokenizer.from_pretrained(files))
        return self._tokenizer

    async def _prompt_ids(self, request: inference_pb2.GenerateRequest) -> list[int]:
        if request.WhichOneof("input") == "token_ids":  # check_prompt saw it non-empty
            return list(request.token_ids.ids)
        tok = await self.tokenizer()
        # Off the event loop: other sessions' steps go on while a long prompt tokenises.
        ids: list[int] = await asyncio.get_running_loop().run_in_executor(
            None, tok.encode, request.prompt)
        if not ids:
            raise InvalidRequest("prompt tokenizes to nothing", field="prompt")
        return ids

    @maps_errors
    async def Generate(self, request: inference_pb2.GenerateRequest,
                       context: Any) -> AsyncIterator[inference_pb2.GenerateResponse]:
        arrived = time.perf_counter()
        try:  # bounded checks first: nothing is tokenised or looked up before them
            check_prompt(request.prompt, request.token_ids.ids, self.limits)
            check_request_id(request.request_id)
            check_temperature(request.sampling.temperature, self.limits)
        except Rejected as exc:
            self._malformed.warning("refused Generate from %s: %s", context.peer(), exc)
            raise
        max_new = request.max_new_tokens or 16
        if max_new > self.config.max_new_tokens:
            raise InvalidRequest(f"max_new_tokens {max_new} > {self.config.max_new_tokens}",
                                 field="max_new_tokens")
        s = request.sampling
        try:
            params = SamplingParams(s.temperature, s.top_p or 1.0, s.seed)
        except ValueError as exc:
            raise InvalidRequest(f"sampling: {exc}", field="sampling") from exc
        privacy = PRIVACY.decode(request.privacy, "privacy", self.entry.s.default_privacy)
        es, route = await self.entry.private_route(privacy)  # before tokenizing
        who = caller(context)  # its quota: by certificate identity, else by address
        exempt = who is not None and who.role is Role.GATEWAY  # it fans in many clients
        with contextlib.nullcontext() if exempt else self.quota.hold(
                client_key(who.uri if who else None, context.peer())):
            async with self._admitted(context) as waited:
                if waited:  # the route may have changed while the call waited
                    es, route = await self.entry.private_route(privacy)
                outcome = "failed"
                try:
                    async for reply in self._generate(request, params, privacy, max_new, es,
                                                      route, arrived):
                        yield reply
                    outcome = "ok"
                finally:
                    m.REQUESTS.labels(outcome).inc()
                    m.REQUEST_SECONDS.labels(outcome).observe(time.perf_counter() - arrived)

    @contextlib.asynccontextmanager
    async def _admitted(self, context: Any) -> AsyncIterator[float]:
        """A session slot from the admission queue (seconds waited), by the call's deadline."""
        remaining = context.time_remaining()
        deadline = None if remaining is None else self.queue.clock() + remaining
        m.ADMISSION_WAITING.set(self.queue.waiting + 1)
        try:
            async with self.queue.slot(deadline) as waited:
                m.ADMISSION_WAITING.set(self.queue.waiting)
                m.ADMISSION_WAIT.observe(waited)
                yield waited
        except Overloaded:
            m.REFUSED.inc()
            raise
        finally:
            m.ADMISSION_WAITING.set(self.queue.waiting)

    async def _generate(self, request: inference_pb2.GenerateRequest, params: SamplingParams,
                        privacy: Privacy, max_new: int, es: Any, route: Any, arrived: float
                        ) -> AsyncIterator[inference_pb2.GenerateResponse]:
        rid = request.request_id  # a label the client chose: echoed, never a session key
        history = await self._prompt_ids(request)
        tok = await self.tokenizer()
        head = self.entry.head(es, route)
        if any(t < 0 or t >= head.vocab_size for t in history):
            raise InvalidRequest(f"token ids must be in [0, {head.vocab_size})",
                                 field="token_ids.ids")
        if len(history) + max_new > head.max_length:
            raise InvalidRequest(f"prompt {len(history)} + {max_new} new tokens exceed the "
                                 f"context of {head.max_length}", field="max_new_tokens")
        stops = set(request.stop_token_ids)
        eos = {tok.eos_token_id} if tok.eos_token_id is not None else set()
        sampling = SamplingParams(params.temperature, params.top_p, params.seed,
                                  tuple(stops | eos))
        prompt_len = len(history)
        m.PROMPT_TOKENS.inc(prompt_len)
        detok = IncrementalText(tok, prompt_len)
        started = step_start = time.perf_counter()
        m.QUEUE_SECONDS.observe(started - arrived)  # admission, tokenising, route lookup
        latencies: list[float] = []  # hook: TTFT then each step, for the monitor's report
        ok: bool | None = None  # hook: True when the loop ends normally, False on an error
        try:
            tokens = self.entry.run(new_session_id(), history, max_new, sampling, privacy, es,
                                    route, lambda t: t in stops or t in eos)
            # The entry extends ``history`` as it goes, maybe ahead of this loop.
            index = -1
            async for token, epoch, made in ahead(tokens, self.config.stream_ahead):
                elapsed, step_start = made - step_start, made
                index += 1
                (m.TTFT if index == 0 else m.STEP).observe(elapsed)
                latencies.append(elapsed)
                m.TOKENS.inc()
                finish = (inference_pb2.FINISH_REASON_EOS if token in eos else
                          inference_pb2.FINISH_REASON_STOP if token in stops else
                          inference_pb2.FINISH_REASON_LENGTH if index + 1 >= max_new else
                          inference_pb2.FINISH_REASON_UNSPECIFIED)
                yield inference_pb2.GenerateResponse(
                    token_id=token, text=detok.next(history, prompt_len + index + 1),
                    index=index,
                    finish_reason=finish, epoch=epoch, step_latency=duration(elapsed),
                    request_id=rid)
            ok = True
        except Exception:
            ok = False
            raise
        finally:
            # hook: a cancelled call (ok None) is no sample; a failed one is an SLA miss
            observe = self.entry.request_observer
            if observe is not None and ok is not None:
                ttft = latencies[0] if latencies else time.perf_counter() - started
                observe(ttft, latencies[1:], ok)
