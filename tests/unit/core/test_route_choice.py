"""An entry's choice among its routes: most SLA headroom from measured steps."""

from __future__ import annotations

import pytest

from edgesplit.core.route_choice import RouteLoad, choose_route, expected_step_s, headroom_s

SLA = 0.15


def test_the_route_with_more_headroom_wins() -> None:
    fast = RouteLoad("A", active=3, step_s=0.060)  # expects 80 ms with one more
    slow = RouteLoad("A#1", active=1, step_s=0.050)  # expects 100 ms: one more doubles it
    assert expected_step_s(fast) == pytest.approx(0.080)
    assert expected_step_s(slow) == pytest.approx(0.100)
    assert headroom_s(fast, SLA) == pytest.approx(0.070)
    assert choose_route([slow, fast], SLA) == "A"


def test_an_unmeasured_replica_is_tried_first_and_ties_take_the_emptier() -> None:
    busy = RouteLoad("A", active=2, step_s=0.010)
    fresh = RouteLoad("A#1", active=0, step_s=None)
    assert choose_route([busy, fresh], SLA) == "A#1"
    a, b = RouteLoad("A", 2, None), RouteLoad("A#1", 1, None)
    assert choose_route([a, b], SLA) == "A#1"
    assert choose_route([RouteLoad("A", 1, None), RouteLoad("A#1", 1, None)], SLA) == "A"


def test_a_lone_route_is_chosen_even_past_its_sla() -> None:
    assert choose_route([RouteLoad("A", 9, 1.0)], SLA) == "A"
    with pytest.raises(ValueError):
        choose_route([], SLA)
