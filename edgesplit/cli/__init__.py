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

# Sub-command modules, in help order; each defines register(subparsers)
# (``demo`` is registered by ``scenario_cmd``).
COMMANDS = ("model", "plan", "bench", "testbed", "generate", "status", "scenario", "sim")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgesplit", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"edgesplit.cli.{name}_cmd").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result = args.handler(args)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
