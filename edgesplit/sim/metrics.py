"""Table 5 figures of one simulated run, in the test bed's definitions.

* ``p50_ms`` / ``p95_ms`` / ``p99_ms``: decode-step latency around the ring,
  over every step of every completed request (``scenario.report.summarize``).
* ``sla_hit_rate``: requests that completed with their mean decode step within
  the scenario's per-step budget, over all requests (failed ones miss).
* ``requests_per_s``: completed requests per second of load.
* ``mean_utilization``: busy fraction (ours plus background) of the nodes of
  the plan in force, averaged over every report of the run.
* ``downtime_incidents_per_h``: failed requests (refusals for privacy apart)
  and stalled steps (longer than ``incident_step_s``), merged into one
  incident when within ``incident_merge_s`` of each other, per hour of load.
* ``privacy_violations``: privacy=high requests served over a route with
  sensitive layers on a node the entry does not trust (the entry refuses
  such routes, so this counts enforcement failures);
  ``privacy_high_refused``: privacy=high requests refused for want of a
  private route (what a static split without enforcement would have exposed).
* ``reconfigurations``: committed plan changes after the first, and the
  median time from the decision to the commit (``time_to_reconfigure_ms``).
"""

from __future__ import annotations

import statistics
from typing import Any

from edgesplit.sim.simulation import RunLog, Simulation


def pct(values: list[float], q: float) -> float | None:
    """The test bed's percentile (nearest rank on the sorted values)."""
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def met(ok: bool, steps: tuple[float, ...], budget: float) -> bool:
    return ok and (not steps or sum(steps) / len(steps) <= budget)


def incidents(times: list[float], merge_s: float) -> int:
    count, last = 0, None
    for t in sorted(times):
        if last is None or t - last > merge_s:
            count += 1
        last = t
    return count


def ms(x: float | None) -> float | None:
    """Seconds as milliseconds to 0.1 (None stays None)."""
    return None if x is None else round(1000 * x, 1)


def summarize(sim: Simulation, log: RunLog) -> dict[str, Any]:
    st, sc = sim.settings, sim.setup.scenario
    recs = log.records
    steps = list(sim.dp.step_latencies)
    ok = [r for r in recs if r.ok]
    failures = [r.finished for r in recs if not r.ok and not r.error.startswith("FAILED_PRECOND")]
    hours = sim.duration_s / 3600.0
    committed = [c for c in log.reconfigurations if c.outcome == "committed"]
    durations = [c.duration_s for c in committed if c.duration_s is not None]
    util = [u for _, u in log.util_samples]
    violations = 0
    for r in ok:
        if r.privacy_high:
            region = sim.region_of[r.entry]
            for epoch in r.epochs:
                plan = log.plans[(region.index, epoch)][1]
                violations += any(not region.private(rt) for rt in plan.routes
                                  if rt.entry == r.entry)
    return {
        "scenario": sc.name, "mode": sim.mode, "model": sim.table.profile.name,
        "seed": sim.seed, "duration_s": sim.duration_s,
        "requests": len(recs), "requests_ok": len(ok), "requests_failed": len(recs) - len(ok),
        "p50_ms": ms(pct(steps, 0.5)), "p95_ms": ms(pct(steps, 0.95)),
        "p99_ms": ms(pct(steps, 0.99)),
        "ttft_p50_ms": ms(pct([r.ttft_s for r in ok], 0.5)),
        "sla_step_ms": sc.sla_step_s * 1000,
        "sla_hit_rate": round(sum(met(r.ok, r.steps_s, sc.sla_step_s) for r in recs)
                              / max(1, len(recs)), 4),
        "requests_per_s": round(len(ok) / sim.duration_s, 3),
        "tokens_per_s": round(sum(len(r.steps_s) + 1 for r in ok) / sim.duration_s, 2),
        "mean_utilization": round(statistics.fmean(util), 4) if util else None,
        "downtime_incidents_per_h": round(
            incidents(failures + log.stalls, st.incident_merge_s) / hours, 2),
        "privacy_violations": violations,
        "privacy_high_refused": log.privacy_high_refused,
        "reconfigurations": max(0, len(committed)),
        "reconfigurations_aborted": sum(c.outcome == "aborted" for c in log.reconfigurations),
        "time_to_reconfigure_ms": ms(statistics.median(durations)) if durations else None,
        "reconfigure_triggers": sorted({t for c in committed for t in c.triggers}),
        "planner_calls": sim.planner_calls,
        "errors": sorted({r.error.split(":")[0] for r in recs if not r.ok}),
        "events_simulated": sim.clock.events,
    }
