"""``edgesplit sim calibrate``: one built-in test-bed scenario on the test bed
and in the simulator, and how far apart they are.

The simulator is given what the test bed measures and sets: the FLOP/s this
machine decodes the scenario's model at (``scenario.runner.calibrate``, the
speed of a slowdown-1 node), each node's slow-down, and the emulated link
delays and bandwidths; the same YAML file drives both. Compared: p50 and p95
decode-step latency, SLA hit rate and the median time from a decision to its
commit. The test bed figure is the median over ``runs`` runs.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from edgesplit.scenario.spec import load_scenario
from edgesplit.sim.metrics import summarize
from edgesplit.sim.setup import build_setup
from edgesplit.sim.simulation import Simulation

KEYS = ("p50_ms", "p95_ms", "sla_hit_rate", "time_to_reconfigure_ms")


def measured_speed(sc: Any) -> dict[str, float]:
    """What one test-bed agent thread does on this machine (needs torch):
    ``flops`` and ``overhead_s`` fit a pass per layer as ``overhead + tokens *
    flops_per_token / flops`` from the decode speed the test bed itself measures
    (``scenario.runner.calibrate``) and a 16-token prefill, because a small
    model's step on a CPU is mostly fixed cost and prefill is far cheaper than
    its tokens' decode steps; ``load_layer_s`` is what loading one layer's
    shard into a segment runner takes (a rollout's Prepare)."""

    import torch

    from edgesplit.model.profile import profile_json
    from edgesplit.model.runner import TorchSegmentRunner
    from edgesplit.model.shard import ShardDir
    from edgesplit.scenario.runner import calibrate as decode_speed
    from edgesplit.scenario.runner import scenario_model

    shards = scenario_model(sc)
    profile = profile_json(str(shards))
    layers = min(4, len(profile["layers"]))
    flops = sum(c["flops_per_token"] for c in profile["layers"][:layers]) / layers
    decode = flops / decode_speed(shards, profile)  # seconds per layer per decode step
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the test bed's agents run it
    try:
        loads, prefill, walls = [], [], []
        for k in range(3):
            # CPU time, as the test bed's compute clock counts it: on a shared
            # machine the wall time is mostly other processes' turns.
            start = time.thread_time()
            runner = TorchSegmentRunner(ShardDir(shards), 0, layers, has_embed=True)
            loads.append(time.thread_time() - start)
            start, wall = time.thread_time(), time.perf_counter()
            runner.forward(f"cal-{k}", runner.embed(list(range(3, 19))), 0)
            prefill.append(time.thread_time() - start)
            walls.append(time.perf_counter() - wall)
    finally:
        torch.set_num_threads(threads)
    t16 = min(prefill) / layers
    per_token = max((t16 - decode) / 15.0, decode * 0.02)
    # On a shared machine a pass also waits for a core: the wall/CPU ratio of
    # the same work, measured now. The test bed's emulated device takes
    # max(wall, k * CPU) for a slow-down k, so the wait shows where k is small.
    stretch = max(1.0, sum(walls) / sum(prefill)) if sum(prefill) > 0 else 1.0
    return {"flops": flops / per_token, "overhead_s": max(0.0, decode - per_token),
            "load_layer_s": statistics.median(loads) / layers, "stretch": stretch}


def relative_error(sim: float | None, bed: float | None) -> float | None:
    if sim is None or bed is None:
        return None
    if bed == 0:
        return 0.0 if sim == 0 else None
    return round(abs(sim - bed) / abs(bed), 4)


def testbed_figures(sc: Any, mode: str, duration_s: float, runs: int,
                    show: Callable[..., None]) -> dict[str, Any]:
    from edgesplit.scenario.report import summarize as bed_summarize
    from edgesplit.scenario.runner import run_mode

    results = []
    for _ in range(runs):
        records, history, live = run_mode(sc, mode, duration_s, show)
        results.append(bed_summarize(sc, mode, duration_s, records, history, live))
    out: dict[str, Any] = {"runs": runs}
    for k in KEYS:
        values = [r[k] for r in results if r.get(k) is not None]
        out[k] = statistics.median(values) if values else None
    return out


def simulated_figures(sc: Any, mode: str, duration_s: float, speed: dict[str, float],
                      seed: int = 0) -> dict[str, Any]:
    """The simulator's figures for the test bed's run: its measured agent speed
    and shard load time, its cadence (reports and decisions every 0.5 s, a 10 s
    cool-down), and planner calls as long as the core planner takes here (timed
    on a first run of the same scenario, so the second, reported run stays a
    function of its inputs)."""
    k = speed.get("stretch", 1.0)  # core waiting on this machine, as measured
    settings = {"base_flops": speed["flops"], "testbed_layer_overhead_s": speed["overhead_s"],
                "testbed_stretch": k, "load_layer_s": speed.get("load_layer_s", 0.0) * k,
                "report_interval_s": 0.5, "interval_s": 0.5, "cooldown_s": 10.0,
                "link_alpha": 0.6}
    timing = Simulation(build_setup(sc, settings), mode, seed, duration_s)
    timing.set_planner_clock(time.perf_counter)
    timing.run()
    if timing.planner_calls:
        settings["planner_s"] = timing.planner_wall_s / timing.planner_calls
    sim = Simulation(build_setup(sc, settings), mode, seed, duration_s)
    full = summarize(sim, sim.run())
    return {**{k: full[k] for k in KEYS}, "planner_s": settings.get("planner_s")}


def calibrate(name: str, runs: int = 1, duration_s: float | None = None,
              mode: str = "adaptive", show: Callable[..., None] = print) -> dict[str, Any]:
    sc = load_scenario(name)
    duration = sc.duration_s if duration_s is None else duration_s
    speed = measured_speed(sc)
    show(f"test-bed agent thread: {speed['flops'] / 1e9:.2f} GFLOP/s + "
         f"{speed['overhead_s'] * 1e3:.2f} ms per layer per pass, "
         f"{speed['load_layer_s'] * 1e3:.1f} ms to load a layer (CPU time; wall "
         f"{speed['stretch']:.2f}x that now)")
    bed = testbed_figures(sc, mode, duration, runs, show)
    sim = simulated_figures(sc, mode, duration, speed)
    return {"scenario": sc.name, "mode": mode, "duration_s": duration,
            "base_flops": speed["flops"], "layer_overhead_s": speed["overhead_s"],
            "load_layer_s": speed["load_layer_s"], "stretch": speed["stretch"],
            "testbed": bed, "sim": sim,
            "relative_error": {k: relative_error(sim[k], bed[k]) for k in KEYS}}
