"""Which of an entry's routes a new session takes (docs/architecture.md §3, "Many sessions").

A plan may give one entry several routes (replicas). The entry places each
new session on the route with the most SLA headroom: the decode-step target
minus the step the session should expect there. That expectation comes from
the route's own measurements: the EWMA of its measured decode steps (which
already include the queueing its current sessions cause), scaled by how much
one more session adds — ``(active + 1) / active`` of it, the share one more
session takes of the route's busiest node; a route without a measurement
yet expects nothing, so a new replica gets sessions at once and is then
measured. Ties go to the route with fewer sessions, then to plan order.
Pure: the caller passes the figures in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

STEP_ALPHA = 0.2  # EWMA weight of a route's newest measured decode step


@dataclass(frozen=True, slots=True)
class RouteLoad:
    """What the entry measures of one of its routes."""

    key: str  # Route.key
    active: int  # sessions running on it now
    step_s: float | None  # EWMA of its measured decode steps; None before the first


def expected_step_s(load: RouteLoad) -> float:
    """The decode step a session added to this route should expect."""
    if load.step_s is None:
        return 0.0
    return load.step_s * (load.active + 1) / max(load.active, 1)


def headroom_s(load: RouteLoad, sla_step_s: float) -> float:
    return sla_step_s - expected_step_s(load)


def choose_route(loads: Sequence[RouteLoad], sla_step_s: float) -> str:
    """The key of the route with the most headroom (``loads`` in plan order)."""
    if not loads:
        raise ValueError("no routes to choose from")
    best = max(range(len(loads)),
               key=lambda i: (headroom_s(loads[i], sla_step_s), -loads[i].active, -i))
    return loads[best].key
