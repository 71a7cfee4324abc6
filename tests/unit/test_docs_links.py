"""The design lives in the repository: every pointer into docs/architecture.md
names a section that exists there, and nothing points at files outside it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"
# Section numbers cited as "docs/architecture.md §6", "§10.2-3" or "§3, §5".
NUMBERED = re.compile(r"docs/architecture\.md(?: §[\d.,§ -]+)")
# Or by name: docs/architecture.md, "Transport" (the name may wrap onto the next line).
NAMED = re.compile(r'docs/architecture\.md,\s*(?:#\s*|//\s*)?"([^"]+)"')
GONE = ("DESIGN" + ".md", "STYLE" + ".md")  # the old design notes outside the repository


def _sources() -> list[Path]:
    return [p for top in ("edgesplit", "services", "tests", "protos", "tools", "deploy")
            for p in sorted((ROOT / top).rglob("*")) if p.is_file()
            and p.suffix in (".py", ".proto", ".yaml", ".sh", ".md")
            and p.relative_to(ROOT).parts[:2] != ("edgesplit", "v1")] + [ROOT / "README.md"]


def _headings() -> tuple[set[str], list[str]]:
    numbers, titles = set(), []
    for line in DOC.read_text().splitlines():
        m = re.match(r"#+ §([\d.]+) (.*)", line)
        if m:
            numbers.add(m.group(1))
            titles.append(m.group(2).lower())
    return numbers, titles


def cited_numbers(text: str) -> set[str]:
    cited = set()
    for ref in NUMBERED.findall(text):
        for part in re.findall(r"§([\d.]+(?:-\d+)?)", ref):
            base, _, last = part.partition("-")
            cited.add(base)
            if last:  # "10.2-3": 10.2 and 10.3
                cited.add(base.rsplit(".", 1)[0] + "." + last if "." in base else last)
    return cited


def test_numbered_pointers_name_existing_sections() -> None:
    numbers, _ = _headings()
    missing = {f"{p.relative_to(ROOT)}: §{n}" for p in _sources()
               for n in cited_numbers(p.read_text()) if n not in numbers}
    assert not missing, sorted(missing)


def test_named_pointers_name_existing_sections() -> None:
    _, titles = _headings()
    missing = {f"{p.relative_to(ROOT)}: {name!r}" for p in _sources()
               for name in NAMED.findall(p.read_text())
               if not any(" ".join(name.lower().split()) in t for t in titles)}
    assert not missing, sorted(missing)


def test_nothing_points_outside_the_repository() -> None:
    stale = [f"{p.relative_to(ROOT)}" for p in _sources() if p != Path(__file__)
             and any(g in p.read_text() for g in GONE)]
    assert not stale, stale


def test_the_parser_reads_ranges_and_lists() -> None:
    assert cited_numbers("see docs/architecture.md §10.2-3 and docs/architecture.md §3, §5)") \
        == {"10.2", "10.3", "3", "5"}
