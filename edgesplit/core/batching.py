"""Which waiting steps a node runs together next: continuous batching's scheduler.

A pure decision over plain values (the node agent's ``batcher.py`` gathers the
queue and carries the batch out; the batching test drives the runners with the
very same function). vLLM's rule, cut down to what a segment needs:

* decode steps first, in arrival order: each holds a running session's next
  token, and costs one token of the budget;
* then prefill, in arrival order, at most ``prefill_chunk`` tokens of each per
  batch, so a long prompt is spread over several batches and never stalls the
  sessions already decoding (chunked prefill interleaved with decode);
* at most ``max_sessions`` steps and ``max_tokens`` tokens per batch;
* a step runs only when the KV it adds fits the node's memory budget (a prefill
  chunk shrinks to fit); when nothing fits, the waiting steps are refused
  (RESOURCE_EXHAUSTED at the caller) instead of waiting without end.

See docs/data-plane.md (batching).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class BatchLimits:
    max_sessions: int = 32  # steps in one batch
    max_tokens: int = 512  # tokens in one batch (decode tokens + prefill chunks)
    prefill_chunk: int = 128  # most tokens of one prompt per batch
    kv_budget_bytes: int = 0  # KV this node may hold in all; 0: no budget
    ring_waves: int = 0  # entry: waves kept on a route's ring (core.waves); 0: its nodes

    def __post_init__(self) -> None:
        if min(self.max_sessions, self.max_tokens, self.prefill_chunk) < 1:
            raise ValueError("batch limits must be positive")
        if self.kv_budget_bytes < 0 or self.ring_waves < 0:
            raise ValueError("kv_budget_bytes and ring_waves must be >= 0")


@dataclass(frozen=True, slots=True)
class Waiting:
    """One step waiting at a node, as the scheduler sees it."""

    remaining: int  # tokens of the step not run here yet
    decode: bool  # a running session's one-token step
    kv_bytes_per_token: int = 0  # KV one more token of it costs on this node


@dataclass(frozen=True, slots=True)
class Batch:
    take: list[tuple[int, int]] = field(default_factory=list)  # (index, tokens) to run
    refused: list[int] = field(default_factory=list)  # indices refused: no KV left


def plan_batch(waiting: Sequence[Waiting], limits: BatchLimits, kv_used: int = 0) -> Batch:
    """The next batch from ``waiting`` (in arrival order), given the KV in use.
    When nothing at all fits the budget, the steps are refused rather than left
    to wait for memory that only their own sessions' ends would free."""
    order = [i for i, w in enumerate(waiting) if w.decode] + \
            [i for i, w in enumerate(waiting) if not w.decode]
    free = limits.kv_budget_bytes - kv_used if limits.kv_budget_bytes else None
    take: list[tuple[int, int]] = []
    tokens = 0
    for i in order:
        if len(take) == limits.max_sessions or tokens == limits.max_tokens:
            break
        w = waiting[i]
        n = min(w.remaining, limits.max_tokens - tokens, 1 if w.decode else limits.prefill_chunk)
        if free is not None and w.kv_bytes_per_token:
            n = min(n, free // w.kv_bytes_per_token)  # a smaller chunk may still fit
            if n < 1:
                continue
            free -= n * w.kv_bytes_per_token
        take.append((i, n))
        tokens += n
    refused = [] if take else list(order)
    return Batch(take, refused)
