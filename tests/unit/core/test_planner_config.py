"""Cluster YAML, profile JSON, the example files and ``edgesplit plan``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from edgesplit.core.cluster_config import (
    ConfigError,
    cluster_from_dict,
    plan_from_dict,
    plan_to_dict,
    profile_from_json,
    profile_to_json,
)
from edgesplit.core.planner import solve
from edgesplit.core.planner_instances import llama2_7b
from edgesplit.core.types import NodeId, Part, Privacy, Trust

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "deploy" / "examples"


def test_cluster_yaml_schema() -> None:
    doc: dict[str, Any] = {
        "reference_tflops": 2.0,
        "nodes": [
            {"id": "a", "trust": "trusted", "memory_gb": 8, "tflops": 1.5, "utilization": 0.2},
            {
                "id": "b",
                "memory_gb": 16,
                "speed": 0.5,
                "trusted_by": ["a"],
                "alive": False,
                "layer_ms": {"0": 2.0, "embed": 0.5},
            },
            {"id": "c", "memory_gb": 4, "tflops": 1},
        ],
        "links": [
            {"src": "a", "dst": "b", "rtt_ms": 4, "bandwidth_mbps": 100},
            {"src": "b", "dst": "c", "rtt_ms": 6, "bandwidth_mbps": 10, "symmetric": False},
        ],
        "default_link": {"rtt_ms": 50, "bandwidth_mbps": 1},
        "entries": ["a"],
        "workload": {"privacy": "high", "privacy_depth": 3, "requests_per_s": 0.1},
        "weights": {"beta": 0.0},
    }
    cfg = cluster_from_dict(doc)
    a, b, _c = cfg.state.nodes
    assert a.trust is Trust.TRUSTED and a.memory_bytes == 8_000_000_000
    assert a.flops_per_s == 1.5e12 and a.utilization == 0.2
    assert b.trust is Trust.UNTRUSTED and b.flops_per_s == 1e12 and not b.alive
    assert dict(b.layer_seconds) == {0: 0.002, Part.EMBED: 0.0005}
    assert b.trusted_by == ("a",)
    ab, ba = cfg.state.link(NodeId("a"), NodeId("b")), cfg.state.link(NodeId("b"), NodeId("a"))
    assert ab is not None and ab.rtt_s == 0.004 and ab.bandwidth_bps == 100e6
    assert ba is not None and ba.rtt_s == 0.004
    bc, cb = cfg.state.link(NodeId("b"), NodeId("c")), cfg.state.link(NodeId("c"), NodeId("b"))
    assert bc is not None and bc.bandwidth_bps == 10e6
    assert cb is not None and cb.bandwidth_bps == 1e6  # from default_link
    assert len(cfg.state.links) == 6
    assert cfg.entries == ("a",)
    assert cfg.workload.privacy is Privacy.HIGH and cfg.workload.privacy_depth == 3
    assert cfg.weights.beta == 0.0 and cfg.weights.gamma == 10.0


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"nodes": []}, "non-empty list"),
        ({"nodes": [{"id": "a", "memory_gb": 1}]}, "give 'tflops' or 'speed'"),
        ({"nodes": [{"id": "a", "tflops": 1}]}, "missing 'memory_gb'"),
        ({"nodes": [{"id": "a", "memory_gb": 1, "tflops": 1, "trust": "maybe"}]}, "trust"),
        (
            {
                "nodes": [{"id": "a", "memory_gb": 1, "tflops": 1}],
                "links": [{"src": "a", "dst": "z", "rtt_ms": 1, "bandwidth_mbps": 1}],
            },
            "unknown node 'z'",
        ),
        ({"nodes": [{"id": "a", "memory_gb": "lots", "tflops": 1}]}, "must be a number"),
        ({"nodes": [{"id": "a", "memory_gb": 1, "tflops": 1}], "entries": ["q"]}, "entries"),
    ],
)
def test_cluster_errors_name_the_place(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        cluster_from_dict(doc)


def test_profile_json_round_trip_and_extra_keys() -> None:
    profile = llama2_7b()
    doc = profile_to_json(profile)
    assert profile_from_json(doc) == profile
    # What `edgesplit model profile --json` prints carries descriptive extras.
    doc = {**doc, "family": "llama", "dtype": "float16", "num_layers": 32, "hidden_size": 4096}
    doc["layers"] = [{**layer, "params": 1} for layer in doc["layers"]]
    assert profile_from_json(doc) == profile
    with pytest.raises(ConfigError, match="num_layers"):
        profile_from_json({**doc, "num_layers": 31})
    with pytest.raises(ConfigError, match="layers\\[0\\]: missing 'weight_bytes'"):
        profile_from_json({**doc, "num_layers": 1, "layers": [{"flops_per_token": 1}]})


def test_examples_load_and_plan() -> None:
    cfg = cluster_from_dict(yaml.safe_load((EXAMPLES / "cluster.yaml").read_text()))
    profile = profile_from_json(json.loads((EXAMPLES / "profile-7b.json").read_text()))
    assert profile.num_layers == 32 and profile.layers[0].weight_bytes == 404_766_720
    res = solve(cfg.state, profile, cfg.workload, cfg.entries, weights=cfg.weights)
    assert res.plan is not None, res.reason
    assert plan_from_dict(json.loads(json.dumps(plan_to_dict(res.plan)))) == res.plan


def _run(*argv: str) -> tuple[int, str]:
    import contextlib
    import io

    from edgesplit.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(argv))
    return code, out.getvalue()


def test_plan_command_json(tmp_path: Path) -> None:
    args = ["plan", "--cluster", str(EXAMPLES / "cluster.yaml")]
    code, text = _run(*args, "--model", str(EXAMPLES / "profile-7b.json"), "--json")
    assert code == 0
    out = json.loads(text)
    assert out["feasible"] and out["plan"]["routes"][0]["entry"] == "gateway"
    assert set(out["baselines"]) == {
        "static",
        "memory_proportional",
        "greedy_fill",
        "throughput_balanced",
    }
    assert out["cost"]["latency_s"] > 0 and out["solve_ms"] >= 0
    # placement keeps the cuts of a given plan; a directory with profile.json works too
    (tmp_path / "profile.json").write_text((EXAMPLES / "profile-7b.json").read_text())
    current = tmp_path / "current.json"
    current.write_text(json.dumps(out["baselines"]["static"]["plan"]))
    code, text = _run(
        *args, "--model", str(tmp_path), "--mode", "placement", "--current", str(current), "--json"
    )
    placed = json.loads(text)
    assert code == 0 and placed["current_cost"]["feasible"]
    starts = [[s["start"] for s in r["segments"]] for r in placed["plan"]["routes"]]
    assert starts == [
        [s["start"] for s in r["segments"]] for r in out["baselines"]["static"]["plan"]["routes"]
    ]
    code, text = _run(*args, "--model", str(EXAMPLES / "profile-7b.json"))
    assert code == 0 and "route gateway:" in text and "throughput_balanced" in text
