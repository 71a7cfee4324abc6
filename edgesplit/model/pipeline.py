"""Run a request through a chain of segment runners in one process.

This is the data plane of DESIGN.md 3 without the network: the entry embeds,
each segment runs its layers with its own KV cache, the runner holding the head
samples. Tests and the pipeline benchmark use it; the node agent follows the same
steps with frames in between. No torch import: it works with the fake runner too.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Any

from edgesplit.model.base import SamplingParams, SegmentRunner


def check_chain(runners: Sequence[SegmentRunner[Any]]) -> None:
    """The runners must cover their layers contiguously, embed first, head somewhere."""
    if not runners or not runners[0].spec.has_embed:
        raise ValueError("the first runner must hold embed")
    if sum(r.spec.has_head for r in runners) != 1:
        raise ValueError("exactly one runner must hold head")
    for a, b in pairwise(runners):
        if a.spec.end != b.spec.start:
            raise ValueError(
                f"gap or overlap between [{a.spec.start},{a.spec.end}) and {b.spec.start}"
            )


def step(
    runners: Sequence[SegmentRunner[Any]],
    session_id: str,
    token_ids: Sequence[int],
    start_pos: int,
    wire_dtype: str | None = None,
) -> Any:
    """Embed ``token_ids`` at ``start_pos`` and run every segment; return logits.

    With ``wire_dtype`` the hidden state goes through encode/decode between hops,
    as it would over the network.
    """
    hidden = runners[0].embed(token_ids)
    for i, r in enumerate(runners):
        if i and wire_dtype is not None:
            hidden = r.decode_hidden(runners[i - 1].encode_hidden(hidden, wire_dtype))
        hidden = r.forward(session_id, hidden, start_pos)
    head = next(r for r in runners if r.spec.has_head)
    if wire_dtype is not None and head is not runners[-1]:
        hidden = head.decode_hidden(runners[-1].encode_hidden(hidden, wire_dtype))
    return head.head(hidden)


def generate(
    runners: Sequence[SegmentRunner[Any]],
    prompt_ids: Sequence[int],
    max_new_tokens: int,
    params: SamplingParams | None = None,
    session_id: str = "local",
    wire_dtype: str | None = None,
    end_session: bool = True,
) -> list[int]:
    """Prefill the prompt, then decode one token per step; returns the new tokens
    (stopping after a stop token, which is included)."""
    check_chain(runners)
    head = next(r for r in runners if r.spec.has_head)
    sampler = head.new_sampler(params or SamplingParams())
    out: list[int] = []
    pos, feed = 0, list(prompt_ids)
    try:
        while len(out) < max_new_tokens:
            token = sampler.choose(step(runners, session_id, feed, pos, wire_dtype))
            out.append(token)
            if sampler.is_stop(token):
                break
            pos, feed = pos + len(feed), [token]
    finally:
        if end_session:
            for r in runners:
                r.end_session(session_id)
    return out
