"""Runs behind ``edgesplit sim run`` and ``edgesplit sim table5``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgesplit.scenario.spec import Scenario, ScenarioError, load_scenario
from edgesplit.sim.metrics import summarize
from edgesplit.sim.setup import build_setup
from edgesplit.sim.simulation import MODES, RunLog, Simulation

SCENARIOS = Path(__file__).parent / "scenarios"
TABLE5_SCENARIOS = {"llama-2-7b": "mec-7b", "llama-2-13b": "mec-13b"}

# The seed's Table 5 (its section 5), for the side-by-side view.
PAPER_TABLE5: dict[str, dict[str, Any]] = {
    "static": {"latency_ms": "500-1000", "requests_per_s": 1, "utilization": "0.50-0.60",
               "sla_hit_rate": "0.60-0.70 (400 ms budget)", "downtime_incidents_per_h": "5-10",
               "privacy": "moderate"},
    "adaptive": {"latency_ms": "100-300", "requests_per_s": 5, "utilization": "0.80-0.95",
                 "sla_hit_rate": "0.95-0.99 (400 ms budget)", "downtime_incidents_per_h": "0-2",
                 "privacy": "high"},
}

TABLE5_KEYS = ("p50_ms", "p95_ms", "requests_per_s", "mean_utilization", "sla_hit_rate",
               "downtime_incidents_per_h", "requests_failed", "privacy_violations")


def find_scenario(name_or_path: str) -> Scenario:
    """A file, a built-in sim scenario (``mec-7b``) or a built-in test-bed one."""
    path = SCENARIOS / f"{name_or_path}.yaml"
    if not Path(name_or_path).exists() and path.exists():
        return load_scenario(str(path))
    try:
        return load_scenario(name_or_path)
    except ScenarioError as exc:
        names = sorted(p.stem for p in SCENARIOS.glob("*.yaml"))
        raise ScenarioError(f"{exc}; simulator built-ins: {', '.join(names)}") from exc


def run_modes(sc: Scenario, seed: int = 0, duration_s: float | None = None,
              modes: tuple[str, ...] = MODES, overrides: dict[str, Any] | None = None
              ) -> dict[str, tuple[Simulation, RunLog]]:
    setup = build_setup(sc, overrides)
    out = {}
    for mode in modes:
        sim = Simulation(setup, mode, seed, duration_s)
        out[mode] = (sim, sim.run())
    return out


def results(runs: dict[str, tuple[Simulation, RunLog]]) -> dict[str, dict[str, Any]]:
    return {mode: summarize(sim, log) for mode, (sim, log) in runs.items()}


def write_plots(runs: dict[str, tuple[Simulation, RunLog]], out_dir: Path, name: str
                ) -> list[str]:
    from edgesplit.sim.plots import cdf_png, timeline_png

    out_dir.mkdir(parents=True, exist_ok=True)
    sla = next(iter(runs.values()))[0].setup.scenario.sla_step_s
    cdf = out_dir / f"{name}-cdf.png"
    cdf_png(cdf, {m: list(sim.dp.step_latencies) for m, (sim, _) in runs.items()}, sla,
            f"{name}: decode step latency (simulated)")
    timeline = out_dir / f"{name}-timeline.png"
    timeline_png(timeline, runs, f"{name}: simulated timeline")
    return [str(cdf), str(timeline)]


def table5(seed: int = 0, hours: float | None = None, plots: Path | None = None
           ) -> dict[str, Any]:
    """The built-in 5G-MEC scenarios, keyed by model then mode, beside the seed's table."""
    out: dict[str, Any] = {}
    for model, name in TABLE5_SCENARIOS.items():
        sc = find_scenario(name)
        runs = run_modes(sc, seed, None if hours is None else hours * 3600)
        full = results(runs)
        out[model] = {m: {k: full[m][k] for k in TABLE5_KEYS} for m in full}
        for m in full:
            out[model][m].update({k: full[m][k] for k in (
                "p99_ms", "reconfigurations", "time_to_reconfigure_ms", "privacy_high_refused")})
        if plots is not None:
            out[model]["plots"] = write_plots(runs, plots, name)
    out["paper"] = PAPER_TABLE5
    return out


def table5_text(t: dict[str, Any]) -> str:
    lines = []
    for model in TABLE5_SCENARIOS:
        rows = t[model]
        modes = [m for m in MODES if m in rows]
        lines.append(f"{model:28}" + "".join(f"{m:>15}" for m in modes)
                     + f"{'paper static':>16}{'paper adaptive':>16}")
        paper = {"p50_ms": "latency_ms", "requests_per_s": "requests_per_s",
                 "mean_utilization": "utilization", "sla_hit_rate": "sla_hit_rate",
                 "downtime_incidents_per_h": "downtime_incidents_per_h",
                 "privacy_violations": "privacy"}
        for k in TABLE5_KEYS:
            ref = paper.get(k)
            ps = str(PAPER_TABLE5["static"][ref]).split(" ")[0] if ref else ""
            pa = str(PAPER_TABLE5["adaptive"][ref]).split(" ")[0] if ref else ""
            lines.append(f"  {k:26}" + "".join(f"{rows[m][k]!s:>15}" for m in modes)
                         + f"{ps:>16}{pa:>16}")
        lines.append("")
    return "\n".join(lines)
