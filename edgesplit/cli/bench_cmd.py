"""``edgesplit bench NAME --json``: each benchmark lives in ``edgesplit.bench.NAME``
and exposes ``add_arguments(parser)`` and ``run(args) -> dict``."""

from __future__ import annotations

import argparse
import importlib
import json
from typing import Any

BENCHES = {
    "planner": "planner solve time, optimality and gains over baselines",
    "pipeline": "split vs monolithic generation speed",
    "load": "split under N concurrent clients vs batched monolithic generate",
    "monitor": "monitor state build time for many simulated nodes",
    "gateway": "OpenAI gateway vs direct gRPC: tokens/s and time to first token",
}


def register(sub: Any) -> None:
    p = sub.add_parser("bench", help="benchmarks that print JSON")
    bsub = p.add_subparsers(dest="bench", required=True)
    for name, help_text in BENCHES.items():
        bp = bsub.add_parser(name, help=help_text)
        bp.add_argument("--json", action="store_true", help="print only the JSON result")
        module = importlib.import_module(f"edgesplit.bench.{name}")
        module.add_arguments(bp)
        bp.set_defaults(handler=_runner(module))


def _runner(module: Any) -> Any:
    def handler(args: argparse.Namespace) -> int:
        result = module.run(args)
        print(json.dumps(result, indent=None if args.json else 2, sort_keys=True))
        return 0

    return handler
