"""The ``edgesplit`` command line.

Each sub-command lives in its own module under ``edgesplit.cli`` and exposes
``register(subparsers)``; heavy imports (torch, grpc) happen inside the handler
so ``edgesplit --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Iterator, Sequence
from importlib import metadata

# Sub-command modules, in help order; each defines register(subparsers)
# (``demo`` is registered by ``scenario_cmd``).
COMMANDS = ("model", "plan", "bench", "testbed", "generate", "status", "scenario", "sim", "pki")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every option's help ends with its default, unless the text already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (action.default is argparse.SUPPRESS or "default" in text.lower()
                or not (action.option_strings or action.nargs in ("?", "*"))):
            return text
        if action.default in (None, "", ()):
            return f"{text} (default: none)"
        return f"{text} (default: %(default)s)"


def version() -> str:
    try:
        return metadata.version("edgesplit")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """``parser`` and every sub-command parser below it."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # aliases share a parser
                yield from parsers(sub)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgesplit", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"edgesplit {version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"edgesplit.cli.{name}_cmd").register(sub)
    for p in parsers(parser):
        p.formatter_class = HelpFormatter
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result = args.handler(args)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
