"""protos/ pass `buf lint` (STANDARD, exceptions justified in buf.yaml;
docs/architecture.md §10.6). buf comes from npm into var/buf (`make setup`)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOCAL_BUF = ROOT / "var" / "buf" / "node_modules" / ".bin" / "buf"


def _buf() -> str | None:
    if LOCAL_BUF.exists():
        return str(LOCAL_BUF)
    return shutil.which("buf")


def test_buf_lint_is_clean() -> None:
    buf = _buf()
    if buf is None:
        pytest.skip("buf not installed: `make setup` puts it in var/buf when npm is "
                    "reachable (npm install --prefix var/buf @bufbuild/buf@1.75.0)")
    run = subprocess.run([buf, "lint"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         check=False)
    assert run.returncode == 0, f"buf lint:\n{run.stdout}{run.stderr}"


def test_every_lint_exception_gives_a_reason() -> None:
    """An ignore comment in a proto must say why on the lines above it."""
    bare: list[str] = []
    for proto in sorted((ROOT / "protos" / "edgesplit" / "v1").glob("*.proto")):
        lines = proto.read_text().splitlines()
        for i, line in enumerate(lines):
            if "buf:lint:ignore" not in line:
                continue
            above = i - 1
            while above >= 0 and "buf:lint:ignore" in lines[above]:  # stacked ignores
                above -= 1
            if above < 0 or not lines[above].strip().startswith("//"):
                bare.append(f"{proto.name}:{i + 1}")
    assert not bare, f"lint exceptions without a reason: {bare}"
