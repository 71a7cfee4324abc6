"""The entry's waves (core.waves): a ready step waits only while as many waves
as the route keeps are out, and only for one round trip; a failed session
does not hold its wave out for good."""

from __future__ import annotations

import pytest

from edgesplit.core.waves import MIN_STALE_S, Waves


def test_a_wave_is_back_when_its_last_session_is() -> None:
    w = Waves(2)
    w.depart(["a", "b"], now=0.0)
    assert w.out(0.0) == 1
    assert not w.back("a", 0.1)
    assert w.back("b", 0.3)
    assert w.out(0.3) == 0
    assert w.ring_s == pytest.approx(0.3)  # measured: the first round trip
    assert not w.back("b", 0.4)  # twice back, or never out: nothing


def test_a_ready_step_waits_only_while_max_waves_are_out() -> None:
    w = Waves(2)
    w.depart(["a"], 0.0)
    assert w.hold_s() == 0.0  # no round trip measured yet: nobody waits
    assert w.back("a", 0.2)
    w.depart(["a"], 1.0)
    assert not w.must_wait(1.0)
    w.depart(["b"], 1.05)
    assert w.must_wait(1.05)
    assert w.hold_s() == pytest.approx(0.2)
    assert w.back("a", 1.2)
    assert not w.must_wait(1.2)


def test_the_round_trip_is_a_moving_average() -> None:
    w = Waves(1)
    for i, ring in enumerate([0.1, 0.2]):
        w.depart(["a"], float(i))
        w.back("a", i + ring)
    assert w.ring_s == pytest.approx(0.1 + 0.2 * (0.2 - 0.1))  # alpha 0.2, not 0.8


def test_a_session_leaving_again_moves_to_its_new_wave() -> None:
    w = Waves(3)
    w.depart(["a", "b"], 0.0)
    w.depart(["a", "c"], 0.1)  # a replayed in a later wave
    assert w.out(0.1) == 2
    assert w.back("b", 0.2)  # its first wave has no one else out
    assert not w.back("a", 0.3)
    assert w.back("c", 0.3)


def test_failed_sessions_do_not_keep_their_wave_out() -> None:
    w = Waves(1)
    w.depart(["a", "b"], 0.0)
    w.forget("a")
    assert w.back("b", 0.1)
    w.depart(["c"], 1.0)  # c fails somewhere and nobody says so
    assert w.must_wait(1.0 + MIN_STALE_S / 2)
    assert not w.must_wait(1.0 + MIN_STALE_S + 0.01)  # given up on: others go on


def test_max_waves_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Waves(0)
