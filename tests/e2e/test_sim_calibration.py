"""The simulator against the test bed: each built-in test-bed scenario runs in
both, and the simulator's p50/p95 decode step, SLA hit rate and time to
reconfigure must be within 15 % of the test bed's (median of 3 runs)."""

from __future__ import annotations

import pytest

from edgesplit.sim.calibrate import KEYS, calibrate


@pytest.mark.slow
# Known gap (README "Simulated Table 5"): the simulator does not model the test
# bed's per-hop software cost waiting for a core on a shared machine; relative
# errors 0.03-0.23 at a light load, 0.4-0.9 under heavy load.
@pytest.mark.xfail(reason="simulator not yet calibrated to within 15 %", strict=False)
@pytest.mark.parametrize("scenario", ["smart-city", "factory", "v2x"])
def test_simulator_agrees_with_the_test_bed(scenario: str) -> None:
    out = calibrate(scenario, runs=3, show=lambda *a, **k: None)
    errors = out["relative_error"]
    assert set(errors) == set(KEYS)
    for key, err in errors.items():
        if out["testbed"][key] is None and out["sim"][key] is None:
            continue  # neither reconfigured (a static-looking run)
        assert err is not None and err <= 0.15, (key, out)
