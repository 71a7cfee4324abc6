"""The one route shape: its validator, its formatter and its builder.

A route is the ring one request passes (docs/architecture.md §5.1):

* ``segments[0]`` runs on the entry with ``Part.EMBED`` and layers ``[0, k)``
  (``k`` may be 0: the entry then only embeds);
* interior segments hold consecutive, non-empty layer ranges on nodes other
  than the entry, each such node once;
* the last segment is a zero-layer segment ``[L, L)`` on the entry with
  ``Part.HEAD``, so raw tokens and logits never leave the entry.

The whole model on one node is ``[entry [0,L) +embed, entry [L,L) +head]``.
Every producer (planner, baselines, test bed, benchmarks) builds routes with
``route_from_cuts`` and every consumer (cost model, broadcaster, in-process
pipeline) checks them with ``check_route``, so the shape is written down once.
"""

from __future__ import annotations

from collections.abc import Sequence

from edgesplit.core.types import EMBED_ONLY, HEAD_ONLY, REPLICA_MARK, NodeId, Part, Route, Segment
from edgesplit.errors import Code, DomainError


class RouteError(DomainError, ValueError):
    """A route does not have the one shape; ``reason`` says what is wrong."""

    code = Code.INVALID_ARGUMENT

    def __init__(self, entry: str, reason: str) -> None:
        super().__init__(f"route of {entry}: {reason}")
        self.entry = entry
        self.reason = reason


def check_route(route: Route, num_layers: int) -> None:
    """Raise ``RouteError`` unless ``route`` has the one shape over ``num_layers`` layers."""
    entry, segs = route.entry, route.segments

    def fail(reason: str) -> RouteError:
        return RouteError(route.key, reason)

    if route.replica < 0:
        raise fail(f"replica must be >= 0, is {route.replica}")
    if REPLICA_MARK in entry:
        raise fail(f"a node id may not contain {REPLICA_MARK!r}")

    if len(segs) < 2:
        if segs and segs[0].parts == EMBED_ONLY | HEAD_ONLY:
            raise fail("embed and head on one segment; the whole model on one node is "
                       f"[{entry} [0,{num_layers}) +embed, {entry} [{num_layers},"
                       f"{num_layers}) +head]")
        raise fail(f"needs at least an embed and a head segment, has {len(segs)}")
    first, last = segs[0], segs[-1]
    if any(Part.HEAD in s.parts for s in segs[:-1]):
        raise fail("head must be on the last segment (a zero-layer segment on the entry); "
                   "head on an earlier segment is the old test-bed shape")
    if first.node != entry or Part.EMBED not in first.parts:
        raise fail(f"segments[0] must run on the entry with embed, is {format_segment(first)}")
    if any(Part.EMBED in s.parts for s in segs[1:]):
        raise fail("embed must be on segments[0] only")
    if last.node != entry or Part.HEAD not in last.parts:
        raise fail(f"the last segment must run on the entry with head, is {format_segment(last)}")
    if last.num_layers:
        raise fail(f"the head segment must hold no layers, holds [{last.start},{last.end})")
    pos = 0
    seen: set[NodeId] = set()
    for k, s in enumerate(segs):
        if s.start != pos:
            kind = "gap" if s.start > pos else "overlap"
            raise fail(f"{kind}: segments[{k}] on {s.node} starts at {s.start}, expected {pos}")
        pos = s.end
        if 0 < k < len(segs) - 1:
            if s.node == entry:
                raise fail(f"visits its entry in the middle (segments[{k}])")
            if s.num_layers == 0:
                raise fail(f"segments[{k}] on {s.node} holds no layers")
            if s.node in seen:
                raise fail(f"visits {s.node} twice")
            seen.add(s.node)
    if pos != num_layers:
        raise fail(f"covers layers [0, {pos}) of {num_layers}")


def route_error(route: Route, num_layers: int) -> str:
    """``check_route`` as a reason string ("" when the route is valid)."""
    try:
        check_route(route, num_layers)
    except RouteError as exc:
        return str(exc)
    return ""


def route_from_cuts(entry: NodeId, nodes: Sequence[NodeId], cuts: Sequence[int],
                    num_layers: int, replica: int = 0) -> Route:
    """The route running ``nodes[i]`` on consecutive layer ranges cut at ``cuts``.

    ``nodes`` are the nodes that run decoder layers, in ring order, one more
    than ``cuts`` (``[a, b, c]`` with ``(5, 11)`` over 16 layers: a [0,5),
    b [5,11), c [11,16)). When ``nodes[0]`` is the entry its range shares the
    embed segment; otherwise the entry only embeds (``[0,0) +embed``). The
    head segment on the entry closes the ring. Raises ``RouteError`` when the
    result is not a valid route (cuts out of order or range, a node twice).
    """
    if len(nodes) != len(cuts) + 1:
        raise RouteError(entry, f"{len(nodes)} nodes need {len(nodes) - 1} cuts, got {len(cuts)}")
    bounds = [0, *cuts, num_layers]
    ranges = [(NodeId(n), bounds[i], bounds[i + 1]) for i, n in enumerate(nodes)]
    if any(b < a for _, a, b in ranges):
        raise RouteError(entry, f"cuts {tuple(cuts)} are not in order within [0, {num_layers}]")
    if ranges[0][0] == entry:
        _, _, k = ranges.pop(0)
    else:
        k = 0
    segs = [Segment(entry, 0, k, EMBED_ONLY), *(Segment(n, a, b) for n, a, b in ranges),
            Segment(entry, num_layers, num_layers, HEAD_ONLY)]
    route = Route(entry, tuple(segs), replica)
    check_route(route, num_layers)
    return route


def format_segment(s: Segment) -> str:
    """``node[start,end)`` with ``+embed`` / ``+head`` for its parts."""
    parts = "".join(f" +{p.value}" for p in sorted(s.parts))
    return f"{s.node} [{s.start},{s.end}){parts}"


def format_route(route: Route) -> str:
    """One line: ``a [0,5) +embed -> b [5,11) -> c [11,16) -> a [16,16) +head``."""
    return " -> ".join(format_segment(s) for s in route.segments)
