"""EWMA: first sample initialises, converges, stays within the samples' range."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgesplit.core.ewma import Ewma, ewma_step


def test_first_sample_initialises() -> None:
    e = Ewma(0.1).update(5.0)
    assert e.value == 5.0 and e.count == 1
    assert ewma_step(None, 5.0, 0.1) == 5.0


def test_converges_to_a_constant_input() -> None:
    e = Ewma(0.3).update(0.0)
    for _ in range(60):
        e = e.update(1.0)
    assert e.get() == pytest.approx(1.0, abs=1e-6)


def test_update_weighs_newest_by_alpha_and_leaves_old_value_alone() -> None:
    a = Ewma(0.25).update(4.0)
    b = a.update(8.0)
    assert b.value == pytest.approx(5.0)
    assert a.value == 4.0  # immutable: the old value is still valid


def test_alpha_one_keeps_latest_and_default_before_first_sample() -> None:
    assert Ewma(1.0).update(3.0).update(7.0).get() == 7.0
    assert Ewma(0.5).get(default=-1.0) == -1.0


@pytest.mark.parametrize("alpha", [0.0, -0.1, 1.5])
def test_rejects_bad_alpha(alpha: float) -> None:
    with pytest.raises(ValueError):
        Ewma(alpha)


@given(
    st.floats(min_value=0.01, max_value=1.0),
    st.lists(st.floats(min_value=-1e6, max_value=1e6), min_size=1, max_size=50),
)
def test_stays_within_sample_range(alpha: float, samples: list[float]) -> None:
    e = Ewma(alpha)
    for x in samples:
        e = e.update(x)
    tol = 1e-9 * max(1.0, max(abs(x) for x in samples))
    assert min(samples) - tol <= e.get() <= max(samples) + tol
    assert e.count == len(samples)
