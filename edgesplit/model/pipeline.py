"""Run a request through a chain of segment runners in one process.

This is the data plane without the network, in the route shape every part of
edgesplit uses (``core.route``): the first runner embeds, each runner runs its
layers with its own KV cache, and the last (zero-layer) runner holds the head
and samples, as the entry does when the ring closes. Tests and the pipeline benchmark use it; the node agent follows the same
steps with frames in between. No torch import: it works with the fake runner too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from edgesplit.core.route import RouteError, check_route, route_from_cuts
from edgesplit.core.types import NodeId, Route, Segment
from edgesplit.model.base import SamplingParams, SegmentRunner, SegmentSpec


def chain_specs(bounds: Sequence[int]) -> list[SegmentSpec]:
    """Runner specs for layer bounds ``[0, 5, 11, 16]`` in the route shape:
    embed with the first range, each range in order, then a zero-layer head."""
    if len(bounds) < 2 or bounds[0] != 0:
        raise RouteError("entry", f"bounds {tuple(bounds)} must start at 0 and have an end")
    nodes = [NodeId("entry"), *(NodeId(f"hop{i}") for i in range(1, len(bounds) - 1))]
    route = route_from_cuts(nodes[0], nodes, bounds[1:-1], bounds[-1])
    return [SegmentSpec(s.start, s.end, s.has_embed, s.has_head) for s in route.segments]


def chain_route(runners: Sequence[SegmentRunner[Any]]) -> Route:
    """The route ``runners`` stand for: the first and the last run on the
    in-process "entry", each other one on a node of its own."""
    entry = NodeId("entry")
    last = len(runners) - 1
    return Route(entry, tuple(
        Segment(entry if i in (0, last) else NodeId(f"hop{i}"), r.spec.start, r.spec.end,
                r.spec.named_parts)
        for i, r in enumerate(runners)))


def check_chain(runners: Sequence[SegmentRunner[Any]]) -> None:
    """The runners must have the one route shape (``core.route.check_route``):
    embed and the first layers, the other layers in order, a zero-layer head."""
    if not runners:
        raise RouteError("entry", "no runners")
    check_route(chain_route(runners), runners[-1].spec.end)


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
    return runners[-1].head(hidden)  # the route's last segment holds head


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
    head = runners[-1]
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
