"""Real inputs of the simulator: model profiles, hardware classes, link traces."""

from __future__ import annotations

import pytest

from edgesplit.sim.hardware import MODELS, load_hardware, model_profile
from edgesplit.sim.traces import PROFILES, Trace, load_trace, synthesize


@pytest.mark.parametrize(("name", "billions"), [("llama-2-7b", 6.74), ("llama-2-13b", 13.02),
                                                ("qwen2.5-7b", 7.62), ("mistral-7b", 7.24)])
def test_model_profiles_match_published_parameter_counts(name: str, billions: float) -> None:
    from edgesplit.model.profile import profile_model
    from edgesplit.sim.hardware import DATA

    prof = profile_model(DATA / "models" / MODELS[name] / "config.json")
    assert prof.total_params / 1e9 == pytest.approx(billions, abs=0.01)
    core = model_profile(name)
    assert core.num_layers == prof.num_layers
    assert core.activation_bytes_per_token == prof.hidden_size * 2  # fp16 / bf16 on the wire


def test_every_hardware_class_has_a_source_and_sane_figures() -> None:
    classes = load_hardware()
    assert {"jetson-agx-orin", "jetson-orin-nano", "rtx-3060", "rtx-4090", "a6000", "a100",
            "h100", "cpu-server"} <= set(classes)
    for hw in classes.values():
        assert hw.source, hw.name
        assert 1e12 < hw.peak_flops < 2e15 and 1e10 < hw.memory_bandwidth < 1e13
        assert 0 < hw.compute_efficiency <= 1 and 0 < hw.memory_efficiency <= 1


def test_roofline_decode_is_memory_bound_and_batches_cheaply() -> None:
    hw = load_hardware()["rtx-4090"]
    p = model_profile("llama-2-7b")
    weights = sum(c.weight_bytes for c in p.layers)
    flops = sum(c.flops_per_token for c in p.layers)
    one = hw.batch_seconds(flops, weights, p.num_layers)
    eight = hw.batch_seconds(8 * flops, weights, p.num_layers)
    # One token reads every weight: about bytes / (bandwidth * efficiency).
    assert one == pytest.approx(weights / (hw.memory_bandwidth * hw.memory_efficiency)
                                + p.num_layers * hw.layer_overhead_s)
    assert eight < 1.05 * one  # eight sessions cost about what one does
    prefill = hw.batch_seconds(512 * flops, weights, p.num_layers)
    assert prefill == pytest.approx(512 * flops / hw.effective_flops
                                    + p.num_layers * hw.layer_overhead_s)  # compute-bound
    slow = load_hardware()["jetson-agx-orin"]
    assert slow.decode_token_seconds(p) > 4 * hw.decode_token_seconds(p)  # 1008 vs 204.8 GB/s


def test_trace_is_piecewise_constant_wraps_and_skips_outages() -> None:
    t = Trace("t", (0.0, 1.0, 1.05, 2.0), (10e6, 0.0, 20e6, 30e6), (0.01, 0.01, 0.02, 0.03))
    assert t.at(0.5) == (10e6, 0.01)
    assert t.at(1.02) == (0.0, 0.01)
    assert t.usable_from(1.01) == pytest.approx(1.05)  # the handover ends at 1.05
    assert t.usable_from(0.5) == 0.5
    assert t.at(t.period_s + 0.5) == (10e6, 0.01)  # wraps around
    with pytest.raises(ValueError):
        Trace("bad", (0.5,), (1.0,), (0.0,))


def test_built_in_traces_stay_in_their_published_ranges() -> None:
    for kind, prof in PROFILES.items():
        trace = load_trace(f"{kind}-1")
        bws = [b / 1e6 for b in trace.bandwidth_bps if b > 0]
        low = min(prof.bandwidth_mbps[0], prof.dip_mbps[0]) if prof.dip_every_s else \
            prof.bandwidth_mbps[0]
        assert low - 0.01 <= min(bws) and max(bws) <= prof.bandwidth_mbps[1] + 0.01
        rtts = [r * 1000 for r in trace.rtt_s]
        assert prof.rtt_ms[0] - 0.01 <= min(rtts) and max(rtts) <= prof.rtt_ms[1] + 0.01
        outages = sum(1 for b in trace.bandwidth_bps if b == 0)
        assert (outages > 0) == (prof.handover_every_s > 0), kind
        assert trace.times[-1] >= 3599.0


def test_synthesized_trace_is_a_function_of_its_seed() -> None:
    assert synthesize("5g-radio", 7, 120.0) == synthesize("5g-radio", 7, 120.0)
    assert synthesize("5g-radio", 7, 120.0) != synthesize("5g-radio", 8, 120.0)
    # The committed files are what the generator writes.
    trace = load_trace("backhaul-2")
    rows = synthesize("backhaul", 2)
    assert len(rows) == len(trace.times)
    assert rows[10][1] * 1e6 == pytest.approx(trace.bandwidth_bps[10])


def test_outage_ends_even_where_float_rounding_lands_on_a_row_boundary() -> None:
    trace = load_trace("5g-radio-1")
    outages = [t for t, b in zip(trace.times, trace.bandwidth_bps, strict=True) if b == 0]
    for start in outages[:10]:
        for lap in (0, 3, 7):
            t = start + lap * trace.period_s
            after = trace.usable_from(t)
            assert after >= t and trace.at(after)[0] > 0


def test_core_waiting_floors_only_the_small_slowdowns_of_test_bed_nodes() -> None:
    from edgesplit.scenario.spec import load_scenario
    from edgesplit.sim.setup import build_setup

    sc = load_scenario("smart-city")  # slow-downs 20, 6, 6, 2
    plain = {n.id: n.slowdown for n in build_setup(sc).nodes}
    waited = {n.id: n.slowdown for n in build_setup(sc, {"testbed_stretch": 3.0}).nodes}
    assert plain == {"device": 20, "edge-1": 6, "edge-2": 6, "cloud": 2}
    assert waited == {"device": 20, "edge-1": 6, "edge-2": 6, "cloud": 3.0}
