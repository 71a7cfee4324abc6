"""edgesplit.core stays pure: importing it loads neither torch nor grpc."""

from __future__ import annotations

import subprocess
import sys

FORBIDDEN = ("torch", "grpc", "transformers", "google.protobuf")


def test_core_imports_no_torch_or_grpc() -> None:
    code = (
        "import importlib, pkgutil, sys, edgesplit.core as c\n"
        "for m in pkgutil.walk_packages(c.__path__, 'edgesplit.core.'):\n"
        "    if not m.name.endswith('milp'):\n"  # milp imports scipy lazily, never torch
        "        importlib.import_module(m.name)\n"
        f"bad = [m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r} or m in {FORBIDDEN!r}]\n"
        "print(','.join(sorted(bad)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"edgesplit.core imported: {out.stdout}"
