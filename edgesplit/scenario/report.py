"""Scenario results: the JSON figures, the side-by-side table, the latency CDF."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

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
              history: list[Any], live: Live) -> dict[str, Any]:
    steps = [s for r in records if r.ok for s in r.steps_s]
    tokens = sum(len(r.steps_s) + 1 for r in records if r.ok)
    committed = [d for d in history if d.outcome == "committed" and list(d.triggers)
                 and "initial" not in d.triggers]
    t2c = [d.trigger_to_commit_s * 1000 for d in committed]
    util = live.utilization
    return {
        "scenario": sc.name, "mode": mode, "duration_s": duration_s,
        "requests_ok": sum(r.ok for r in records),
        "requests_failed": sum(not r.ok for r in records),
        "p50_ms": round(1000 * (_pct(steps, 0.5) or 0), 1),
        "p95_ms": round(1000 * (_pct(steps, 0.95) or 0), 1),
        "ttft_p50_ms": round(1000 * (_pct([r.ttft_s for r in records if r.ok], 0.5) or 0), 1),
        "sla_step_ms": sc.sla_step_s * 1000,
        "sla_hit_rate": round(sum(_met(r, sc.sla_step_s) for r in records)
                              / max(1, len(records)), 3),
        "tokens_per_s": round(tokens / duration_s, 2),
        "mean_utilization": round(statistics.mean(util), 3) if util else None,
        "reconfigurations": len(committed),
        "time_to_reconfigure_ms": round(statistics.median(t2c), 1) if t2c else None,
        "reconfigure_triggers": sorted({t for d in committed for t in d.triggers}),
        "privacy_violations": privacy_violations(sc, records, live),
        "errors": sorted({r.error.split(":")[0] for r in records if not r.ok}),
    }


KEYS = ["requests_ok", "requests_failed", "p50_ms", "p95_ms", "sla_hit_rate", "tokens_per_s",
        "mean_utilization", "reconfigurations", "time_to_reconfigure_ms", "privacy_violations"]


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
