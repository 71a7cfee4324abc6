"""The latency CDF (the seed's Figure 3) and a timeline of one simulated run:
step latency and load over time, events and reconfigurations, and which node
holds which layers in each epoch."""

from __future__ import annotations

from pathlib import Path

from edgesplit.scenario.report import cdf_png
from edgesplit.sim.simulation import RunLog, Simulation

__all__ = ["cdf_png", "timeline_png"]


def _buckets(sim: Simulation, log: RunLog) -> tuple[list[float], list[float], list[float], list[float]]:
    """Per bucket: start, mean decode step (ms) of requests finished, arrivals/s,
    mean utilisation of plan nodes."""
    size = sim.settings.timeline_bucket_s
    n = max(1, int(sim.duration_s // size) + 1)
    steps: list[list[float]] = [[] for _ in range(n)]
    arrivals = [0] * n
    util: list[list[float]] = [[] for _ in range(n)]
    for r in log.records:
        k = int((r.arrived - sim.t0) // size)
        if 0 <= k < n:
            arrivals[k] += 1
        k = int((r.finished - sim.t0) // size)
        if r.ok and r.steps_s and 0 <= k < n:
            steps[k].append(1000 * sum(r.steps_s) / len(r.steps_s))
    for t, u in log.util_samples:
        k = int(t // size)
        if 0 <= k < n:
            util[k].append(u)
    xs = [k * size for k in range(n)]
    lat = [sum(v) / len(v) if v else float("nan") for v in steps]
    return xs, lat, [a / size for a in arrivals], [sum(v) / len(v) if v else float("nan")
                                                  for v in util]


def timeline_png(path: Path, runs: dict[str, tuple[Simulation, RunLog]], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_lat, ax_load, ax_layers) = plt.subplots(
        3, 1, figsize=(10, 9), sharex=True, gridspec_kw={"height_ratios": [3, 2, 2]})
    sla_ms = 0.0
    for mode, (sim, log) in runs.items():
        xs, lat, rate, util = _buckets(sim, log)
        ax_lat.plot(xs, lat, label=mode, linewidth=1)
        ax_load.plot(xs, util, label=f"utilisation ({mode})", linewidth=1)
        sla_ms = sim.setup.scenario.sla_step_s * 1000
    any_run = next(iter(runs.values()))
    xs, _, rate, _ = _buckets(*any_run)
    ax_load2 = ax_load.twinx()
    ax_load2.plot(xs, rate, color="gray", linestyle=":", label="arrivals/s")
    ax_load2.set_ylabel("arrivals / s")
    ax_lat.axhline(sla_ms, color="gray", linestyle="--", label=f"SLA {sla_ms:.0f} ms")
    ax_lat.set_yscale("log")
    ax_lat.set_ylabel("mean decode step (ms)")
    ax_lat.set_title(title)
    for t, what in any_run[1].events[1:]:
        for ax in (ax_lat, ax_load, ax_layers):
            ax.axvline(t, color="red", alpha=0.25, linewidth=0.8)
        ax_lat.annotate(what[:28], (t, ax_lat.get_ylim()[1]), rotation=90, fontsize=6,
                        va="top", ha="right", color="red")
    adaptive = runs.get("adaptive")
    if adaptive is not None:
        for c in adaptive[1].reconfigurations:
            if c.committed_at is not None:
                ax_lat.axvline(c.committed_at, color="green", alpha=0.4, linewidth=0.8)
        _layers(ax_layers, adaptive[0], adaptive[1])
    ax_lat.legend(fontsize=7, loc="upper left")
    ax_load.set_ylabel("plan-node utilisation")
    ax_load.legend(fontsize=7, loc="upper left")
    ax_layers.set_xlabel("time since load start (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _layers(ax, sim: Simulation, log: RunLog) -> None:  # type: ignore[no-untyped-def]
    """Bands: for each epoch of the adaptive run, the layers each node holds."""
    nodes = list(sim.nodes)
    epochs = sorted(log.plans.items())
    end = sim.duration_s
    cmap = {n: i for i, n in enumerate(nodes)}
    epochs = [(key, v) for key, v in epochs if key[0] == 0]  # the first region's plans
    for k, (_key, (start, plan)) in enumerate(epochs):
        stop = epochs[k + 1][1][0] if k + 1 < len(epochs) else end
        for r in plan.routes[:1]:
            for s in r.segments:
                if s.num_layers:
                    ax.broken_barh([(max(0.0, start), stop - max(0.0, start))],
                                   (s.start, s.num_layers), facecolors=f"C{cmap[s.node] % 10}")
    for n, i in cmap.items():
        ax.plot([], [], color=f"C{i % 10}", linewidth=6, label=n)
    ax.set_ylabel("layers held (adaptive)")
    ax.set_ylim(0, sim.table.profile.num_layers)
    ax.legend(fontsize=7, loc="upper left", ncol=len(nodes))
