"""``edgesplit sim run|table5|bench|calibrate``: the discrete-event simulator."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("sim", help="simulate a scenario at any scale with the real control code")
    ssub = p.add_subparsers(dest="sim_command", required=True)

    r = ssub.add_parser("run", help="static, single-device and adaptive on one scenario")
    r.add_argument("scenario", help="a simulator built-in (mec-7b, mec-13b), a test-bed "
                                    "built-in or a YAML file")
    r.add_argument("--hours", type=float, default=None, help="load duration (default: the file's)")
    r.add_argument("--seed", type=int, default=0, help="random seed (same seed, same result)")
    r.add_argument("--modes", default="static,single-device,adaptive",
                   help="comma-separated modes to simulate")
    r.add_argument("--out", default="var/sim", help="directory for the CDF and timeline PNGs")
    r.add_argument("--no-plots", action="store_true", help="skip the CDF and timeline PNGs")
    r.add_argument("--json", action="store_true", help="print only the JSON result")
    r.set_defaults(handler=_run)

    t = ssub.add_parser("table5", help="the seed's Table 5 at 7B and 13B on 5G-MEC, simulated")
    t.add_argument("--seed", type=int, default=0, help="random seed (same seed, same result)")
    t.add_argument("--hours", type=float, default=None, help="default: one hour")
    t.add_argument("--out", default="var/sim", help="directory for the CDF and timeline PNGs")
    t.add_argument("--no-plots", action="store_true", help="skip the CDF and timeline PNGs")
    t.add_argument("--json", action="store_true", help="print only the JSON result")
    t.set_defaults(handler=_table5)

    b = ssub.add_parser("bench", help="scale: 1000 nodes, 100 entries, one simulated hour")
    b.add_argument("--nodes", type=int, default=1000, help="simulated nodes")
    b.add_argument("--entries", type=int, default=100, help="entry nodes (one cell each)")
    b.add_argument("--hours", type=float, default=1.0, help="simulated hours of load")
    b.add_argument("--seed", type=int, default=0, help="random seed (same seed, same result)")
    b.add_argument("--workers", type=int, default=0,
                   help="processes sharing the run's parts (0: one per core; the result "
                        "is the same for any number)")
    b.add_argument("--json", action="store_true", help="print only the JSON result")
    b.set_defaults(handler=_bench)

    c = ssub.add_parser("calibrate", help="a test-bed scenario on the test bed and simulated")
    c.add_argument("scenario", help="a built-in test-bed scenario (smart-city, factory, v2x)")
    c.add_argument("--runs", type=int, default=1, help="test-bed runs (median)")
    c.add_argument("--duration", type=float, default=None,
                   help="seconds of load (default: the scenario's)")
    c.add_argument("--mode", default="adaptive", choices=["adaptive", "static"],
                   help="test-bed mode to compare")
    c.add_argument("--json", action="store_true", help="print only the JSON result")
    c.set_defaults(handler=_calibrate)


def _print(data: dict[str, Any], as_json: bool, text: str = "") -> None:
    if as_json or not text:
        print(json.dumps(data, indent=2))
    else:
        print(text)


def _run(args: argparse.Namespace) -> int:
    from edgesplit.scenario.report import table
    from edgesplit.sim.runs import find_scenario, results, run_modes, write_plots

    sc = find_scenario(args.scenario)
    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    runs = run_modes(sc, args.seed, None if args.hours is None else args.hours * 3600, modes)
    out: dict[str, Any] = {"scenario": sc.name, "seed": args.seed, "results": results(runs)}
    if not args.no_plots:
        out["plots"] = write_plots(runs, Path(args.out), sc.name)
    _print(out, args.json, table(out["results"]))
    return 0


def _table5(args: argparse.Namespace) -> int:
    from edgesplit.sim.runs import table5, table5_text

    out = table5(args.seed, args.hours, None if args.no_plots else Path(args.out))
    _print(out, args.json, table5_text(out))
    return 0


def _bench(args: argparse.Namespace) -> int:
    from edgesplit.sim.bench import bench

    _print(bench(args.nodes, args.entries, args.hours * 3600, args.seed,
                 workers=args.workers or None), True)
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from edgesplit.sim.calibrate import calibrate

    def show(msg: str, transient: bool = False) -> None:
        if not transient:
            print(msg, file=sys.stderr)

    out = calibrate(args.scenario, runs=args.runs, duration_s=args.duration, mode=args.mode,
                    show=show)
    _print(out, True)
    return 0
