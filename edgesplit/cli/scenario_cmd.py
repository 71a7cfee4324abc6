"""``edgesplit scenario run NAME [--mode adaptive|static|single-device|both|all]
[--duration S] --json`` and ``edgesplit demo`` (smart-city, both modes, live view,
report and PNG)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from edgesplit.scenario.spec import MODES


def register(sub: Any) -> None:
    p = sub.add_parser("scenario", help="run an adaptive-vs-static scenario on the test bed")
    ssub = p.add_subparsers(dest="scenario_command", required=True)
    r = ssub.add_parser("run", help="run a built-in scenario or a YAML file")
    r.add_argument("name", help="smart-city, smart-city-surge, factory, v2x, or a path to a "
                                "scenario YAML")
    _common(r)
    r.set_defaults(handler=_run)
    ls = ssub.add_parser("list", help="built-in scenarios")
    ls.set_defaults(handler=_list)
    d = sub.add_parser("demo", help="the main job: smart-city in both modes, shown live")
    _common(d)
    d.set_defaults(handler=_demo, name="smart-city", mode="both")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mode", choices=[*MODES, "both", "all"], default="both",
                   help="adaptive: the orchestrator adapts; static: it keeps its first plan; "
                        "single-device: the whole model on the entry; both: adaptive and "
                        "static; all: the three")
    p.add_argument("--duration", type=float, default=None, help="seconds of load per mode "
                                                                "(default: the scenario's)")
    p.add_argument("--json", action="store_true", help="print only the JSON result")
    p.add_argument("--out", default="out", help="where the JSON report and PNG go")
    p.add_argument("--insecure", action="store_true",
                   help="plaintext on loopback instead of mTLS (default: every service gets "
                        "its own certificate under the run's state directory)")


def _list(args: argparse.Namespace) -> int:
    from edgesplit.scenario.spec import BUILTIN, load_scenario

    for path in sorted(BUILTIN.glob("*.yaml")):
        sc = load_scenario(str(path))
        print(f"{sc.name:12} {sc.duration_s:5.0f}s  {sc.description}")
    return 0


def execute(args: argparse.Namespace) -> dict[str, Any]:
    from edgesplit.scenario.report import cdf_png, summarize, table, timeline_png
    from edgesplit.scenario.runner import default_show, run_mode
    from edgesplit.scenario.spec import load_scenario

    sc = load_scenario(args.name)
    duration = args.duration or sc.duration_s
    modes = {"both": ["adaptive", "static"], "all": list(MODES)}.get(args.mode, [args.mode])
    show = default_show
    show(f"scenario {sc.name}: {sc.description}")
    results: dict[str, dict[str, Any]] = {}
    steps: dict[str, list[float]] = {}
    runs: dict[str, Any] = {}
    for mode in modes:
        start = time.monotonic()
        records, history, live = run_mode(sc, mode, duration, show,
                                          insecure=getattr(args, "insecure", False))
        results[mode] = summarize(sc, mode, duration, records, history, live)
        steps[mode] = [s for r in records if r.ok for s in r.steps_s]
        runs[mode] = (records, history, live)
        show(f"[{mode}] done in {time.monotonic() - start:.0f}s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"scenario": sc.name, "results": results}
    (out / f"scenario-{sc.name}.json").write_text(json.dumps(report, indent=2))
    cdf_png(out / f"scenario-{sc.name}-cdf.png", steps, sc.sla_step_s,
            f"{sc.name}: decode step latency, {' vs '.join(modes)}")
    timeline_png(out / f"scenario-{sc.name}-timeline.png", sc, runs, duration)
    if not args.json:
        print(table(results))
        print(f"report: {out / f'scenario-{sc.name}.json'}, "
              f"CDF: {out / f'scenario-{sc.name}-cdf.png'}, "
              f"timeline: {out / f'scenario-{sc.name}-timeline.png'}")
    return report


def _run(args: argparse.Namespace) -> int:
    report = execute(args)
    if args.json:
        print(json.dumps(report["results"], indent=2))
    return 0


def _demo(args: argparse.Namespace) -> int:
    print("edgesplit demo: a local test bed (4 emulated nodes, a model generated here), "
          "requests served across them while conditions change;\nthe orchestrator adapts "
          "(adaptive) or keeps its first plan (static). "
          + ("Plaintext on loopback (--insecure)." if args.insecure else
             "mTLS between every process, each with its own certificate."), file=sys.stderr)
    execute(args)
    return 0
