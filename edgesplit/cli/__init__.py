"""The ``edgesplit`` command line.

Each sub-command lives in its own module under ``edgesplit.cli`` and exposes
``register(subparsers)``; heavy imports (torch, grpc) happen inside the handler
so ``edgesplit --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# module name -> one-line help; each module defines register(subparsers).
COMMANDS: dict[str, str] = {
    "model": "generate, shard and profile models",
    "plan": "compute a plan for a cluster and compare with baselines",
    "bench": "benchmarks that print JSON",
    "testbed": "run a local test bed of node agents",
    "generate": "generate text through an entry node",
    "status": "show the monitor's view of the cluster",
    "scenario": "run an adaptive-vs-static scenario on the test bed",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgesplit", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"edgesplit.cli.{name}_cmd")
        except ModuleNotFoundError as exc:
            if exc.name != f"edgesplit.cli.{name}_cmd":
                raise
            continue  # not built yet: the command is simply absent
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result = args.handler(args)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
