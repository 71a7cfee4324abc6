"""The model CLI feeds the planner CLI: `model tiny` -> `model shard` ->
`model profile --json` -> `plan --model PROFILE.json` on the example cluster."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgesplit.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_tiny_shard_profile_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model, shards = tmp_path / "m", tmp_path / "s"
    assert main(["model", "tiny", str(model), "--family", "mistral", "--layers", "6",
                 "--hidden", "64"]) == 0
    assert main(["model", "shard", str(model), str(shards)]) == 0
    manifest = json.loads((shards / "manifest.json").read_text())
    assert {s["name"] for s in manifest["shards"]} == {"embed", "head",
                                                       *(f"layer.{i}" for i in range(6))}
    capsys.readouterr()
    assert main(["model", "profile", str(shards), "--json"]) == 0
    profile = json.loads(capsys.readouterr().out)
    assert profile["digest"] == manifest["model_digest"]
    assert len(profile["layers"]) == 6 and profile["activation_bytes_per_token"] == 64 * 4
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(profile))
    assert main(["plan", "--cluster", str(ROOT / "deploy" / "examples" / "cluster.yaml"),
                 "--model", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    text = json.dumps(out)
    assert "static" in text and "memory_proportional" in text
