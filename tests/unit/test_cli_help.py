"""The CLI explains itself: every option of every sub-command has help text
that shows its default, and ``--version`` answers."""

from __future__ import annotations

import argparse

import pytest

from edgesplit.cli import HelpFormatter, build_parser, main, parsers, version

SKIP = (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)


def all_actions() -> list[tuple[str, argparse.Action]]:
    return [(p.prog, a) for p in parsers(build_parser()) for a in p._actions
            if not isinstance(a, SKIP)]


def test_every_sub_command_is_walked() -> None:
    progs = {p.prog for p in parsers(build_parser())}
    for expected in ("edgesplit generate", "edgesplit model tiny", "edgesplit bench gateway",
                     "edgesplit testbed up", "edgesplit status", "edgesplit demo"):
        assert expected in progs


@pytest.mark.parametrize(("prog", "action"), all_actions(),
                         ids=lambda x: x if isinstance(x, str) else "/".join(
                             x.option_strings) or x.dest)
def test_every_option_has_help_that_shows_its_default(prog: str, action: argparse.Action
                                                      ) -> None:
    assert action.help and action.help.strip(), f"{prog} {action.dest}: no help text"
    if action.option_strings:
        shown = HelpFormatter(prog)._get_help_string(action)
        assert "default" in shown.lower(), f"{prog} {action.option_strings}: {shown!r}"


def test_help_renders_with_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["generate", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "(default: 32)" in out and "(default: var/testbed)" in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"edgesplit {version()}"
