"""The one route shape: validator, builder and formatter (edgesplit.core.route)."""

from __future__ import annotations

import re

import pytest

from edgesplit.core.route import (
    RouteError,
    check_route,
    format_route,
    route_error,
    route_from_cuts,
)
from edgesplit.core.types import EMBED_ONLY, HEAD_ONLY, NodeId, Part, Route, Segment

A, B, C = NodeId("a"), NodeId("b"), NodeId("c")
L = 16


def reason(route: Route, num_layers: int = L) -> str:
    with pytest.raises(RouteError) as err:
        check_route(route, num_layers)
    assert err.value.entry == route.entry
    return err.value.reason


def test_builder_makes_the_planner_shape() -> None:
    r = route_from_cuts(A, [A, B, C], [5, 11], L)
    assert r.segments == (Segment(A, 0, 5, EMBED_ONLY), Segment(B, 5, 11), Segment(C, 11, 16),
                          Segment(A, 16, 16, HEAD_ONLY))
    assert r.cuts == (5, 11)
    check_route(r, L)
    assert format_route(r) == "a [0,5) +embed -> b [5,11) -> c [11,16) -> a [16,16) +head"


def test_builder_whole_model_on_one_node_and_entry_that_only_embeds() -> None:
    whole = route_from_cuts(A, [A], [], L)
    assert whole.segments == (Segment(A, 0, L, EMBED_ONLY), Segment(A, L, L, HEAD_ONLY))
    only_embeds = route_from_cuts(A, [B], [], L)
    assert only_embeds.segments == (Segment(A, 0, 0, EMBED_ONLY), Segment(B, 0, L),
                                    Segment(A, L, L, HEAD_ONLY))
    assert route_from_cuts(A, [A, B], [0], L) == only_embeds  # an empty entry range is the same


@pytest.mark.parametrize("nodes,cuts,why", [
    ([A, B], [], "2 nodes need 1 cuts"),
    ([A, B, C], [11, 5], "not in order"),
    ([A, B], [17], "not in order"),
    ([A, B, C], [5, 5], "segments[1] on b holds no layers"),
    ([A, B, B], [5, 11], "visits b twice"),
    ([A, B, A], [5, 11], "visits its entry in the middle"),
])
def test_builder_refuses_what_is_not_a_route(nodes: list[NodeId], cuts: list[int],
                                             why: str) -> None:
    with pytest.raises(RouteError, match=re.escape(why)):
        route_from_cuts(A, nodes, cuts, L)


def test_old_test_bed_shape_is_rejected_with_the_reason() -> None:
    # head on segment 0, the ring closing into it (what even_plan used to build)
    old = Route(A, (Segment(A, 0, 5, EMBED_ONLY | HEAD_ONLY), Segment(B, 5, 11),
                    Segment(C, 11, 16)))
    why = reason(old)
    assert "head must be on the last segment" in why and "old test-bed shape" in why


def test_old_single_segment_shape_is_rejected_with_the_reason() -> None:
    old = Route(A, (Segment(A, 0, L, EMBED_ONLY | HEAD_ONLY),))
    why = reason(old)
    assert "embed and head on one segment" in why
    assert "[a [0,16) +embed, a [16,16) +head]" in why  # says what to send instead


@pytest.mark.parametrize("segments,why", [
    # gap: layers 5..6 are nowhere
    ((Segment(A, 0, 5, EMBED_ONLY), Segment(B, 6, 16), Segment(A, 16, 16, HEAD_ONLY)),
     "gap: segments[1] on b starts at 6, expected 5"),
    # overlap: layer 4 twice
    ((Segment(A, 0, 5, EMBED_ONLY), Segment(B, 4, 16), Segment(A, 16, 16, HEAD_ONLY)),
     "overlap: segments[1] on b starts at 4, expected 5"),
    # short: the last layers are missing
    ((Segment(A, 0, 5, EMBED_ONLY), Segment(B, 5, 12), Segment(A, 12, 12, HEAD_ONLY)),
     "covers layers [0, 12) of 16"),
    # head on an interior segment
    ((Segment(A, 0, 5, EMBED_ONLY), Segment(B, 5, 16, HEAD_ONLY), Segment(A, 16, 16, HEAD_ONLY)),
     "head must be on the last segment"),
    # head on another node than the entry
    ((Segment(A, 0, 5, EMBED_ONLY), Segment(B, 5, 16), Segment(C, 16, 16, HEAD_ONLY)),
     "the last segment must run on the entry with head"),
    # no head at all
    ((Segment(A, 0, 5, EMBED_ONLY), Segment(B, 5, 16), Segment(A, 16, 16)),
     "the last segment must run on the entry with head"),
    # the head segment carries layers
    ((Segment(A, 0, 5, EMBED_ONLY), Segment(B, 5, 10), Segment(A, 10, 16, HEAD_ONLY)),
     "the head segment must hold no layers"),
    # embed elsewhere than segments[0]
    ((Segment(A, 0, 5), Segment(B, 5, 16, EMBED_ONLY), Segment(A, 16, 16, HEAD_ONLY)),
     "segments[0] must run on the entry with embed"),
    ((Segment(A, 0, 5, EMBED_ONLY), Segment(B, 5, 16, EMBED_ONLY),
      Segment(A, 16, 16, HEAD_ONLY)),
     "embed must be on segments[0] only"),
    # the first segment on another node
    ((Segment(B, 0, 5, EMBED_ONLY), Segment(C, 5, 16), Segment(A, 16, 16, HEAD_ONLY)),
     "segments[0] must run on the entry with embed"),
    # an empty interior segment, a node twice, the entry in the middle
    ((Segment(A, 0, 5, EMBED_ONLY), Segment(B, 5, 5), Segment(C, 5, 16),
      Segment(A, 16, 16, HEAD_ONLY)), "segments[1] on b holds no layers"),
    ((Segment(A, 0, 5, EMBED_ONLY), Segment(B, 5, 8), Segment(C, 8, 12), Segment(B, 12, 16),
      Segment(A, 16, 16, HEAD_ONLY)), "visits b twice"),
    ((Segment(A, 0, 5, EMBED_ONLY), Segment(A, 5, 8), Segment(B, 8, 16),
      Segment(A, 16, 16, HEAD_ONLY)), "visits its entry in the middle"),
    ((), "needs at least an embed and a head segment, has 0"),
])
def test_every_rule_has_its_reason(segments: tuple[Segment, ...], why: str) -> None:
    assert why in reason(Route(A, segments))


def test_route_error_is_the_reason_as_a_string() -> None:
    good = route_from_cuts(A, [A, B], [8], L)
    assert route_error(good, L) == ""
    assert route_error(good, 20) == "route of a: covers layers [0, 16) of 20"


def test_segment_parts_are_named_and_typed() -> None:
    s = Segment(A, 0, 2, frozenset({Part.EMBED}))
    assert s.has_embed and not s.has_head and s.keys == (Part.EMBED, 0, 1)
    assert Segment(A, 2, 2, HEAD_ONLY).keys == (Part.HEAD,)
    with pytest.raises(TypeError):
        Segment(A, 0, 1, frozenset({"embed"}))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Segment(A, 0, 1, (Part.EMBED,))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Segment(A, 3, 2)
