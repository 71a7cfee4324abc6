"""The committed generated code equals what the pinned grpcio-tools makes
from protos/ (docs/architecture.md §10.6)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_matches_protos(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "tools" / "gen_protos.py"), str(tmp_path)],
                   check=True, capture_output=True)
    fresh = {p.name: p.read_bytes() for p in (tmp_path / "edgesplit" / "v1").glob("*_pb2*")}
    committed = {p.name: p.read_bytes() for p in (ROOT / "edgesplit" / "v1").glob("*_pb2*")}
    assert fresh, "generator produced nothing"
    assert sorted(fresh) == sorted(committed), "generated file set differs: run `make protos`"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"stale generated code {stale}: run `make protos`"


def test_every_message_and_field_is_commented() -> None:
    missing: list[str] = []
    for proto in sorted((ROOT / "protos" / "edgesplit" / "v1").glob("*.proto")):
        lines = proto.read_text().splitlines()
        for i, line in enumerate(lines):
            s = line.strip()
            is_decl = s.startswith(("message ", "service ", "enum ", "rpc ")) or (
                s.endswith(";") and "=" in s and not s.startswith(("option", "syntax", "package"))
            )
            if is_decl and not lines[i - 1].strip().startswith("//"):
                missing.append(f"{proto.name}:{i + 1}: {s}")
    assert not missing, "uncommented:\n" + "\n".join(missing)


def test_vendored_google_protos_match_the_pinned_package() -> None:
    """protos/google/ is googleapis-common-protos' own copy (whose generated
    code the services import), so the two cannot drift."""
    import google.rpc.code_pb2

    installed = Path(google.rpc.code_pb2.__file__).parent
    for vendored in sorted((ROOT / "protos" / "google" / "rpc").glob("*.proto")):
        assert vendored.read_bytes() == (installed / vendored.name).read_bytes(), vendored.name
