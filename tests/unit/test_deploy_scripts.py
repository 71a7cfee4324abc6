"""The scripts the image runs for compose and Kubernetes, against real services:
the health probe (deploy/healthcheck.py) over mTLS, the init job's scenario
mapping and API keys (deploy/compose/init.py), the conditions job
(deploy/compose/conditions.py) on a real node agent; and the base image pin."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import pytest
import yaml

from edgesplit.procs import ServiceProcess, start_service
from edgesplit.rpc.transport import Transport, TransportSettings
from edgesplit.scenario.spec import load_scenario
from edgesplit.security.pki import init_pki
from edgesplit.v1 import testbed_admin_pb2 as ta
from edgesplit.v1 import testbed_admin_pb2_grpc as ta_grpc

ROOT = Path(__file__).resolve().parents[2]
PINNED = re.compile(r"@sha256:[0-9a-f]{64}$")


def script(path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(Path(path).stem, ROOT / path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tls_args(d: Path) -> list[str]:
    return ["--tls-cert", str(d / "tls.pem"), "--tls-key", str(d / "tls.key"),
            "--tls-ca", str(d / "ca.pem")]


def tls_env(d: Path) -> dict[str, str]:
    return {"EDGESPLIT_TLS_CA": str(d / "ca.pem"), "EDGESPLIT_TLS_CERT": str(d / "tls.pem"),
            "EDGESPLIT_TLS_KEY": str(d / "tls.key")}


def mtls(d: Path) -> Transport:
    return Transport(TransportSettings(str(d / "ca.pem"), str(d / "tls.pem"), str(d / "tls.key")))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pki")
    init_pki(root, nodes=["node-a"], clients=["client"], admins=["conditions"])
    return root


@pytest.fixture(scope="module")
def reviser(pki: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    svc = start_service("split_reviser", tmp_path_factory.mktemp("reviser"),
                        tls_args(pki / "services" / "split-reviser"))
    try:
        yield svc
    finally:
        svc.stop()


def test_base_image_is_pinned_by_digest_by_default() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    (default,) = re.findall(r"^ARG BASE_IMAGE=(\S+)$", dockerfile, re.MULTILINE)
    assert PINNED.search(default), default
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    for name in ("init", "monitor"):
        args = compose["services"][name]["build"]["args"]  # monitor's: from x-service
        assert args["BASE_IMAGE"] == "${EDGESPLIT_BASE_IMAGE:-" + default + "}"


def test_health_probe_passes_over_mtls_with_the_services_certificate(
        pki: Path, reviser: ServiceProcess) -> None:
    probe = script("deploy/healthcheck.py")
    own = tls_env(pki / "services" / "split-reviser")
    assert probe.main([reviser.address], env=own) == 0


def test_health_probe_fails_without_a_certificate_or_a_server(
        pki: Path, reviser: ServiceProcess, capsys: pytest.CaptureFixture[str]) -> None:
    probe = script("deploy/healthcheck.py")
    assert probe.main([reviser.address], env={}) == 1  # mTLS: no client certificate
    assert "unhealthy" in capsys.readouterr().err
    other_ca = pki.parent / "other-pki"
    init_pki(other_ca)
    assert probe.main([reviser.address], env=tls_env(other_ca / "services" / "monitor")) == 1
    assert probe.main(["127.0.0.1:1"], env=tls_env(pki / "services" / "monitor")) == 1
    assert probe.main(["--http", "http://127.0.0.1:1/readyz"]) == 1
    assert probe.main(["--bogus", "x", "y"]) == 2


def test_init_maps_a_scenario_onto_the_compose_nodes() -> None:
    init = script("deploy/compose/init.py")
    profile = {"embed": {"weight_bytes": 1000, "kv_bytes_per_token": 0},
               "head": {"weight_bytes": 1000, "kv_bytes_per_token": 0},
               "layers": [{"weight_bytes": 500, "kv_bytes_per_token": 1}] * 4}
    nodes = ["node-a", "node-b", "node-c"]
    # By id: the compose scenario names the compose nodes.
    wan = load_scenario(str(ROOT / "deploy" / "scenarios" / "wan.yaml"))
    inv = init.inventory(nodes, profile, 16, 0.6)
    conditions = {c["node"]: c for c in init.apply_scenario(inv, wan, nodes)}
    assert [n["trust"] for n in inv["nodes"]] == ["trusted", "untrusted", "untrusted"]
    assert inv["trusted_nodes"] == ["node-a"]
    a = conditions["node-a"]["conditions"]
    assert a["compute_slowdown"] == 4 and a["link_delay_s"] == {"node-b": 0.01, "node-c": 0.02}
    assert a["link_bandwidth_bps"] == {"node-b": 100e6, "node-c": 50e6}
    assert conditions["node-c"]["conditions"]["background_utilization"] == 0.3
    # In order, entry first: a built-in scenario's four nodes need four compose nodes.
    city = load_scenario("smart-city")
    with pytest.raises(SystemExit, match="has 4 nodes"):
        init.apply_scenario(init.inventory(nodes, profile, 16, 0.6), city, nodes)
    four = [*nodes, "node-d"]
    inv = init.inventory(four, profile, 16, 0.6)
    conditions = {c["node"]: c for c in init.apply_scenario(inv, city, four)}
    assert init.node_map(city, four) == {"device": "node-a", "edge-1": "node-b",
                                         "edge-2": "node-c", "cloud": "node-d"}
    assert {n["id"]: n["trust"] for n in inv["nodes"]} == {
        "node-a": "trusted", "node-b": "trusted", "node-c": "untrusted", "node-d": "untrusted"}
    assert conditions["node-a"]["conditions"]["link_bandwidth_bps"]["node-d"] == 200e6
    assert conditions["node-a"]["conditions"]["compute_slowdown"] == 20


def test_init_writes_api_key_digests_for_the_gateway_and_the_key_for_the_host(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    init = script("deploy/compose/init.py")
    gateway, host = tmp_path / "gateway", tmp_path / "host"
    gateway.mkdir()
    host.mkdir()
    monkeypatch.setattr(init, "API_KEYS", gateway / "api-keys.yaml")
    monkeypatch.setattr(init, "PKI", tmp_path / "pki")
    (tmp_path / "pki" / "clients").mkdir(parents=True)
    (tmp_path / "pki" / "clients" / "host").symlink_to(host)
    init.api_keys(["client", "host"])
    key = (host / "api-key").read_text().strip()
    book = yaml.safe_load((gateway / "api-keys.yaml").read_text())
    assert {c["client"] for c in book["clients"]} == {"client", "host"}
    assert {"client": "host", "key_sha256": hashlib.sha256(key.encode()).hexdigest()} \
        in book["clients"]
    assert key not in (gateway / "api-keys.yaml").read_text()  # digests only
    init.api_keys(["client", "host"])  # idempotent: a second `up` keeps the keys
    assert (host / "api-key").read_text().strip() == key


@pytest.fixture
def node(pki: Path, tmp_path: Path) -> Iterator[ServiceProcess]:
    n = pki / "nodes" / "node-a"
    svc = start_service("node_agent", tmp_path, [
        "--node-id", "node-a", "--state-dir", str(tmp_path / "state"), "--testbed-admin",
        "--control-public-key", str(n / "control.ed25519.pub.pem"), *tls_args(n)],
        timeout=120)
    try:
        yield svc
    finally:
        svc.stop()


def test_conditions_job_sets_the_scenarios_conditions_as_admin_only(
        pki: Path, node: ServiceProcess) -> None:
    job = script("deploy/compose/conditions.py")
    want: dict[str, Any] = {"compute_slowdown": 3.0, "background_utilization": 0.25,
                            "link_delay_s": {"node-b": 0.02},
                            "link_bandwidth_bps": {"node-b": 5e7}}
    entries = [{"node": "node-a", "address": node.address, "conditions": want}]
    with pytest.raises(grpc.RpcError) as refused:  # a client may not set conditions
        job.apply(entries, mtls(pki / "clients" / "client"), wait_s=0)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    job.apply(json.loads(json.dumps(entries)), mtls(pki / "admins" / "conditions"), wait_s=0)
    with mtls(pki / "admins" / "conditions").sync_channel(node.address) as ch:
        got = ta_grpc.TestbedAdminStub(ch).GetConditions(ta.GetConditionsRequest(), timeout=10).conditions
    assert got.compute_slowdown == 3.0 and got.background_utilization == 0.25
    assert dict(got.link_delay_s) == {"node-b": 0.02}
    assert dict(got.link_bandwidth_bps) == {"node-b": 5e7}
