"""The Grafana dashboard only reads metrics the services really export."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client import REGISTRY

import edgesplit.rpc.metrics  # noqa: F401 - imported to register its metrics
import services.broadcaster.metrics
import services.monitor.metrics
import services.node_agent.metrics
import services.orchestrator.loop
import services.split_reviser.servicer
from edgesplit.rpc.convert import duration
from edgesplit.v1 import monitor_pb2 as mpb

ROOT = Path(__file__).resolve().parents[3]
GRAFANA = ROOT / "deploy" / "grafana"


def exported() -> set[str]:
    # The monitor exports E(t) from its latest state only: give it one with
    # every kind of figure (a GPU node, a link, judged requests).
    state = mpb.EnvironmentState(requests_total=1, window_requests=1)
    for node in ("n1", "n2"):
        v = state.nodes.add(reports=1, has_gpu=True)
        v.state.node_id, v.state.alive = node, True
    state.link_views.add(src="n1", dst="n2", rtt=duration(0.01), bandwidth_bps=1e6)
    services.monitor.metrics.publish(state)
    names: set[str] = set()
    for family in REGISTRY.collect():
        names.update(s.name for s in family.samples)
        names.add(family.name)
    return names


def test_dashboard_reads_existing_metrics() -> None:
    dash = json.loads((GRAFANA / "dashboards" / "edgesplit.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    assert exprs
    used = {m for e in exprs for m in re.findall(r"\bedgesplit_[a-z_]+", e)}
    # Labelled families with no samples yet export only their declared name.
    families = {f.name for f in REGISTRY.collect()}
    known = exported() | {f + s for f in families for s in ("_total", "_bucket", "_sum", "_count")}
    assert used <= known, sorted(used - known)
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    assert not any(re.search(r"\[\d+[smh]\]", e) for e in exprs), "use $__rate_interval"
    for p in dash["panels"]:  # one unit per panel: no bytes beside ratios
        if p["type"] != "row":
            assert p["fieldConfig"]["defaults"].get("unit"), p["title"]


def test_provisioning_files_parse() -> None:
    for path in (GRAFANA / "provisioning").rglob("*.yaml"):
        data = yaml.safe_load(path.read_text())
        assert data["apiVersion"] == 1, path
