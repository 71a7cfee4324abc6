"""Scenario results: the JSON figures, the side-by-side table, the latency CDF."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from edgesplit.core.control import Decision, Outcome
from edgesplit.core.trust import listed, untrusted_sensitive
from edgesplit.rpc.convert import plan_from_proto
from edgesplit.scenario.runner import Live, RequestRecord, _met
from edgesplit.scenario.spec import Scenario


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


PRIVACY_DEPTH = 1  # the orchestrator's default, which scenarios keep


def privacy_violations(sc: Scenario, records: list[RequestRecord], live: Live) -> int:
    """privacy=high requests served by a route that put embed, head or the
    first layer on a node the entry does not trust (counted once per route)."""
    trusted = {n.id for n in sc.nodes if n.trusted}
    bad = 0
    for r in records:
        if not (r.ok and r.privacy_high):
            continue
        for epoch in r.epochs:
            plan = live.plans.get(epoch)
            if plan is None:
                continue
            for route in plan_from_proto(plan).routes:
                if untrusted_sensitive(route, PRIVACY_DEPTH, listed(trusted)):
                    bad += 1
    return bad


def summarize(sc: Scenario, mode: str, duration_s: float, records: list[RequestRecord],
              history: list[Decision], live: Live) -> dict[str, Any]:
    steps = [s for r in records if r.ok for s in r.steps_s]
    tokens = sum(len(r.steps_s) + 1 for r in records if r.ok)
    committed = [d for d in history if d.outcome is Outcome.COMMITTED and d.triggers]
    t2c = [d.trigger_to_commit_s * 1000 for d in committed]
    util, peak = live.utilization, live.peak_utilization
    ok = sum(r.ok for r in records)
    return {
        "scenario": sc.name, "mode": mode, "duration_s": duration_s,
        "requests_ok": ok,
        "requests_failed": sum(not r.ok for r in records),
        # Refused by the entry's admission queue (RESOURCE_EXHAUSTED): failed too.
        "requests_refused": sum(r.error.startswith("RESOURCE_EXHAUSTED") for r in records),
        "requests_per_s": round(ok / duration_s, 3),
        "p50_ms": round(1000 * (_pct(steps, 0.5) or 0), 1),
        "p95_ms": round(1000 * (_pct(steps, 0.95) or 0), 1),
        "ttft_p50_ms": round(1000 * (_pct([r.ttft_s for r in records if r.ok], 0.5) or 0), 1),
        "sla_step_ms": sc.sla_step_s * 1000,
        "sla_hit_rate": round(sum(_met(r, sc.sla_step_s) for r in records)
                              / max(1, len(records)), 3),
        "tokens_per_s": round(tokens / duration_s, 2),
        # Busy time / wall time of the plan's nodes: over the run, and while the
        # closed-loop load was at its peak (None without a step up of clients).
        "mean_utilization": round(statistics.mean(util), 3) if util else None,
        "peak_load_utilization": round(statistics.mean(peak), 3) if peak else None,
        "reconfigurations": len(committed),
        "time_to_reconfigure_ms": round(statistics.median(t2c), 1) if t2c else None,
        "reconfigure_triggers": sorted({t for d in committed for t in d.triggers}),
        "privacy_violations": privacy_violations(sc, records, live),
        "errors": sorted({r.error.split(":")[0] for r in records if not r.ok}),
    }


KEYS = ["requests_ok", "requests_failed", "requests_refused", "requests_per_s", "p50_ms",
        "p95_ms", "ttft_p50_ms", "sla_hit_rate", "tokens_per_s", "mean_utilization",
        "peak_load_utilization", "reconfigurations", "time_to_reconfigure_ms",
        "privacy_violations"]


def table(results: dict[str, dict[str, Any]]) -> str:
    modes = list(results)
    lines = [f"{'':24}" + "".join(f"{m:>14}" for m in modes)]
    for k in KEYS:
        lines.append(f"{k:24}" + "".join(f"{results[m].get(k)!s:>14}" for m in modes))
    return "\n".join(lines)


def cdf_png(path: Path, steps: dict[str, list[float]], sla_s: float, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for mode, values in steps.items():
        if not values:
            continue
        s = sorted(v * 1000 for v in values)
        ax.step(s, [(i + 1) / len(s) for i in range(len(s))], where="post", label=mode)
    ax.axvline(sla_s * 1000, color="gray", linestyle="--", label=f"SLA {sla_s * 1000:.0f} ms")
    ax.set_xscale("log")
    ax.set_xlabel("decode step latency around the ring (ms)")
    ax.set_ylabel("fraction of steps")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---- the timeline: what happened when --------------------------------------------------
def epoch_spans(history: list[Decision], started_at: float, end_s: float) -> list[tuple[float, float, int]]:
    """``(from_s, to_s, epoch)`` in run time: the epoch in force before the run
    (the initial plan) from 0, then each committed decision's new epoch from
    its commit (decision time + trigger-to-commit)."""
    commits = sorted((d.at + d.trigger_to_commit_s - started_at, int(d.new_epoch))
                     for d in history if d.outcome is Outcome.COMMITTED and d.new_epoch)
    before = [e for t, e in commits if t <= 0]
    changes = [(t, e) for t, e in commits if 0 < t < end_s]
    first = before[-1] if before else (changes[0][1] - 1 if changes else 0)
    marks = [(0.0, first), *changes]
    return [(t, marks[i + 1][0] if i + 1 < len(marks) else end_s, e)
            for i, (t, e) in enumerate(marks) if e]


def _layers(plan: Any, node: str) -> str:
    """What ``node`` holds in ``plan``, in route order: ``embed+L0-3+head``
    (an entry runs embed and head as segments of their own around the ring)."""
    held: list[str] = []
    for route in plan.routes:
        for seg in route.segments:
            if seg.node != node:
                continue
            parts = ["embed"] if seg.has_embed else []
            if seg.end > seg.start:
                parts.append(f"L{seg.start}" + (f"-{seg.end - 1}" if seg.end - seg.start > 1
                                                 else ""))
            parts += ["head"] if seg.has_head else []
            held += [p for p in parts if p not in held]
    return "+".join(held)


def _event_labels(sc: Scenario, until_s: float) -> list[tuple[float, str]]:
    """One label per moment: events scheduled together share it."""
    at: dict[float, list[str]] = {}
    for ev in sc.events:
        if ev.at <= until_s:
            at.setdefault(ev.at, []).append(ev.describe())
    return [(t, d[0] + (f" (+{len(d) - 1} more)" if len(d) > 1 else ""))
            for t, d in sorted(at.items())]


def timeline_png(path: Path, sc: Scenario, runs: dict[str, tuple[list[RequestRecord],
                 list[Any], Live]], duration_s: float) -> None:
    """Per mode, two panels over run time: above, every decode step's latency
    (one thin line per request, failed requests as red crosses, the SLA as a
    dashed line, the scenario's events and the committed reconfigurations as
    vertical lines); below, one band per node with the layers it held."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = list(runs)
    nodes = [n.id for n in sc.nodes]
    fig, axes = plt.subplots(2 * len(modes), 1, figsize=(11, 4.6 * len(modes)), sharex=True,
                             gridspec_kw={"height_ratios": [3, 1.4] * len(modes)}, squeeze=False)
    cmap = plt.get_cmap("tab10")
    for m_i, mode in enumerate(modes):
        records, history, live = runs[mode]
        lat, band = axes[2 * m_i][0], axes[2 * m_i + 1][0]
        for r in records:
            if not r.ok:
                lat.plot([r.started], [sc.sla_step_s * 1000], "x", color="#c00", ms=6)
                continue
            t = r.started + r.ttft_s
            xs, ys = [], []
            for s in r.steps_s:
                t += s
                xs.append(t)
                ys.append(s * 1000)
            lat.plot(xs, ys, lw=0.7, alpha=0.55, color="#36c")
        lat.axhline(sc.sla_step_s * 1000, color="#555", ls="--", lw=1,
                    label=f"SLA {sc.sla_step_s * 1000:.0f} ms per step")
        lat.set_yscale("log")
        lat.set_ylabel("decode step (ms)")
        failed = sum(not r.ok for r in records)
        lat.set_title(f"{sc.name}, {mode}: {len(records) - failed} requests served"
                      + (f", {failed} failed (red x)" if failed else ""), fontsize=10)
        for t, label in _event_labels(sc, duration_s):
            lat.axvline(t, color="#e80", lw=1.2, ls=":")
            lat.annotate(label, (t, 1.0), xycoords=("data", "axes fraction"), rotation=90,
                         va="top", ha="right", fontsize=7, color="#a50")
        spans = epoch_spans(history, live.started_at, duration_s) if live.started_at else []
        for t0, _, epoch in spans[1:]:
            lat.axvline(t0, color="#2a6", lw=1.4)
            lat.annotate(f"epoch {epoch}", (t0, 0.02), xycoords=("data", "axes fraction"),
                         rotation=90, va="bottom", ha="left", fontsize=7, color="#175")
        lat.grid(True, which="both", alpha=0.25)
        lat.legend(loc="upper right", fontsize=8)
        for e_i, (t0, t1, epoch) in enumerate(spans):
            proto = live.plans.get(epoch)
            plan = plan_from_proto(proto) if proto is not None else None
            for n_i, node in enumerate(nodes):
                held = _layers(plan, node) if plan is not None else "?"
                if not held:
                    continue
                band.broken_barh([(t0, t1 - t0)], (n_i - 0.4, 0.8), color=cmap(e_i % 10),
                                 alpha=0.55)
                band.text((t0 + t1) / 2, n_i, held, ha="center", va="center", fontsize=7,
                          clip_on=True)
        band.set_yticks(range(len(nodes)), nodes, fontsize=8)
        band.set_ylim(-0.6, len(nodes) - 0.4)
        band.invert_yaxis()
        band.set_ylabel("layers held")
        band.grid(True, axis="x", alpha=0.25)
    axes[-1][0].set_xlabel("seconds into the run")
    axes[-1][0].set_xlim(0, duration_s)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
