"""deploy/compose.yaml is valid for docker-compose and every service command
names a module that exists, with flags its config accepts."""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from edgesplit.rpc.config import ServiceConfig, load_config

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose.yaml"


@functools.cache
def _resolved() -> dict[str, object]:
    exe = shutil.which("docker-compose")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("docker-compose missing in CI: `make setup` installs it")
        pytest.skip("docker-compose not installed (make setup installs it as root)")
    out = subprocess.run([exe, "-f", str(COMPOSE), "--profile", "gpu", "config"],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    parsed = yaml.safe_load(out.stdout)
    assert isinstance(parsed, dict)
    return parsed


SERVICES = {"monitor", "orchestrator", "split-reviser", "broadcaster"}
GATEWAY = "gateway"  # HTTP, not gRPC: /readyz is its health
NODES = {"node-a", "node-b", "node-c"}
TLS_ENV = {"EDGESPLIT_TLS_CA": "/etc/edgesplit/pki/ca.pem",
           "EDGESPLIT_TLS_CERT": "/etc/edgesplit/pki/tls.pem",
           "EDGESPLIT_TLS_KEY": "/etc/edgesplit/pki/tls.key"}


def mounts(svc: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(source, target, read-only) of each volume, long or short syntax."""
    out = []
    for v in svc.get("volumes", []):
        if isinstance(v, dict):
            out.append((str(v.get("source", "")), v["target"], bool(v.get("read_only"))))
        else:
            source, target, *mode = v.split(":")
            out.append((source, target, mode == ["ro"]))
    return out


def argv(svc: dict[str, Any]) -> list[str]:
    """What the container runs: entrypoint then command."""
    return [*(svc.get("entrypoint") or []), *(svc.get("command") or [])]


def test_compose_config_is_valid_and_healthchecked() -> None:
    services = _resolved()["services"]
    assert isinstance(services, dict)
    assert SERVICES | NODES | {GATEWAY, "init", "conditions", "client", "prometheus",
                               "grafana"} <= set(services)
    for name in SERVICES | NODES | {GATEWAY}:
        svc = services[name]
        probe = svc["healthcheck"]["test"]
        assert probe[:3] == ["CMD", "python", "/opt/edgesplit/share/healthcheck.py"], name
        if name == GATEWAY:
            assert probe[3:] == ["--http", "http://127.0.0.1:8080/readyz"]
        else:  # gRPC health over mTLS with the service's own certificate
            assert probe[3:] == ["127.0.0.1:50051"], name
        assert (svc.get("depends_on") or {}), f"{name} starts before init has run"
        for dep, cond in svc["depends_on"].items():
            want = "service_completed_successfully" if dep == "init" else "service_healthy"
            assert cond["condition"] == want, name
    gpu = services["node-gpu"]
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]


def test_every_channel_is_mtls_with_its_own_certificate() -> None:
    services = _resolved()["services"]
    assert isinstance(services, dict)
    for name in SERVICES | NODES | {GATEWAY}:
        env = services[name]["environment"]
        assert {k: env.get(k) for k in TLS_ENV} == TLS_ENV, name
        assert not any("insecure" in a for a in argv(services[name])), name
    client = services["client"]["environment"]
    assert client == {"EDGESPLIT_ENTRY": "node-a:50051", "EDGESPLIT_TLS_DIR": "/etc/edgesplit/pki"}


def test_each_service_mounts_only_its_own_secrets() -> None:
    services = _resolved()["services"]
    assert isinstance(services, dict)
    for name in SERVICES | NODES | {GATEWAY, "client", "conditions"}:
        pki = [m for m in mounts(services[name]) if m[0].startswith("pki-")]
        assert pki == [(f"pki-{name}", "/etc/edgesplit/pki", True)], name
    argvs = {n: argv(services[n]) for n in SERVICES | NODES}
    signers = [n for n, a in argvs.items() if any("control.ed25519.pem" in x for x in a)]
    assert signers == ["broadcaster"]
    for n in NODES:
        assert "--control-public-key=/etc/edgesplit/pki/control.ed25519.pub.pem" in argvs[n]
    init = {target: source for source, target, _ in mounts(services["init"])}
    assert {f"/pki/nodes/{n}" for n in NODES} | {f"/pki/services/{s}" for s in SERVICES} \
        | {"/pki/services/gateway", "/pki/admins/conditions", "/pki/clients/host",
           "/pki/admins/operator"} <= set(init)
    assert "--api-keys=/etc/edgesplit/pki/api-keys.yaml" in argv(services[GATEWAY])


def _published(port: Any) -> tuple[str, int, int]:
    """(host address, host port, container port) of a resolved port, either syntax."""
    if isinstance(port, dict):
        return port["host_ip"], int(port["published"]), int(port["target"])
    host, published, target = port.removesuffix("/tcp").split(":")
    return host, int(published), int(target)


def test_entry_orchestrator_and_gateway_publish_on_loopback_only() -> None:
    services = _resolved()["services"]
    assert isinstance(services, dict)
    published = {n: [_published(p) for p in services[n].get("ports", [])]
                 for n in SERVICES | NODES | {GATEWAY}}
    assert published.pop("node-a") == [("127.0.0.1", 50051, 50051)]
    assert published.pop("orchestrator") == [("127.0.0.1", 50052, 50051)]
    assert published.pop(GATEWAY) == [("127.0.0.1", 8080, 8080)]
    assert not any(published.values()), published
    orch = argv(services["orchestrator"])
    assert "--entries=node-a" in orch
    assert any(a.startswith("--db=/var/lib/edgesplit/") for a in orch)  # a writable volume


def test_prometheus_scrapes_every_service_on_the_metrics_port() -> None:
    services = _resolved()["services"]
    assert isinstance(services, dict)
    conf = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets = {t for job in conf["scrape_configs"] for sc in job["static_configs"]
               for t in sc["targets"]}
    assert targets == {f"{n}:9400" for n in SERVICES | NODES} | {"gateway:8080"}
    for name in SERVICES | NODES:
        assert "--metrics-listen=0.0.0.0:9400" in argv(services[name]), name


def test_compose_commands_name_real_modules_and_flags() -> None:
    raw = yaml.safe_load(COMPOSE.read_text())
    for name, svc in raw["services"].items():
        cmd = argv({**raw.get("x-node", {}), **svc} if name.startswith("node-") else svc)
        if cmd[:2] != ["python", "-m"]:
            continue  # init, client and the observability images
        module = cmd[2]
        assert importlib.util.find_spec(module) is not None, f"{name}: no module {module}"
        package = module.rsplit(".", 1)[-1]
        config_mod = importlib.import_module(f"services.{package}.config")
        classes = [c for c in vars(config_mod).values()
                   if isinstance(c, type) and issubclass(c, ServiceConfig) and c is not ServiceConfig]
        assert classes, f"{name}: no config class"
        env = {k: str(v) for k, v in (svc.get("environment") or {}).items()
               if not k.startswith("EDGESPLIT_TLS_")}  # the files are in the container only
        load_config(classes[0], cmd[3:], env=env)  # raises SystemExit on a bad flag


def test_dockerignore_keeps_the_context_small() -> None:
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert ignore[0 if ignore[0] == "*" else ignore.index("*")] == "*"
    copied = {line.split()[1].rstrip("/").lstrip("./") for line in
              (ROOT / "deploy" / "Dockerfile").read_text().splitlines()
              if line.startswith("COPY ") and "--from" not in line}
    allowed = {p.lstrip("!").rstrip("/") for p in ignore if p.startswith("!")}
    assert copied <= allowed, copied - allowed


K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("base", "overlays/dev", "overlays/gpu", "overlays/cert-manager")
CERT_MANAGER = "cert-manager.io/v1"  # CRDs: kubernetes-validate has no schema for them
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job")


@functools.cache
def rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed (it renders the kustomizations)")
    out = subprocess.run([kubectl, "kustomize", str(K8S / overlay)], capture_output=True,
                         text=True, check=False)
    assert out.returncode == 0, out.stderr
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


def pod_specs(docs: tuple[dict[str, Any], ...]) -> list[tuple[str, dict[str, Any]]]:
    return [(d["metadata"]["name"], d["spec"]["template"]["spec"]) for d in docs
            if d["kind"] in WORKLOADS]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kubernetes_manifests_pass_strict_schema_validation(overlay: str) -> None:
    kv = pytest.importorskip("kubernetes_validate")
    version = kv.latest_version()
    for doc in rendered(overlay):
        if doc["apiVersion"] != CERT_MANAGER:
            kv.validate(doc, version, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_is_locked_down_sized_and_probed(overlay: str) -> None:
    specs = pod_specs(rendered(overlay))
    assert specs
    for name, spec in specs:
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] and pod["runAsUser"] == 10001 and pod["fsGroup"], name
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"], name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert c["resources"]["requests"] and c["resources"]["limits"], name
        for c in spec["containers"]:
            env = {e["name"]: e["value"] for e in c.get("env", [])}
            assert {k: env.get(k) for k in TLS_ENV} == TLS_ENV, name  # mTLS everywhere
            probes = [c[p] for p in ("startupProbe", "readinessProbe", "livenessProbe")]
            if name == GATEWAY:  # HTTP: ready once it has a tokenizer and a live entry
                assert [p["httpGet"]["path"] for p in probes] == ["/healthz", "/readyz",
                                                                   "/healthz"]
                assert "--listen=0.0.0.0:8080" in c["command"]
                continue
            # Servers require a client certificate: kubelet's own grpc probe has
            # none, so the probe runs in the container with the service's.
            for probe in probes:
                assert probe["exec"]["command"] == [
                    "python", "/opt/edgesplit/share/healthcheck.py", "127.0.0.1:50051"], name
                assert probe["timeoutSeconds"] >= 3, name
            assert "--metrics-listen=0.0.0.0:9400" in c["command"], name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_referenced_secrets_and_config_maps_are_made_or_documented(overlay: str) -> None:
    docs = rendered(overlay)
    made = {(d["kind"], d["metadata"]["name"]) for d in docs}
    readme = (K8S / "README.md").read_text()
    for name, spec in pod_specs(docs):
        # A Certificate makes its Secret; a projected volume refers to several.
        made |= {("Secret", d["spec"]["secretName"]) for d in docs if d["kind"] == "Certificate"}
        for v in spec.get("volumes", []):
            sources = [v, *v.get("projected", {}).get("sources", [])]
            for src in sources:
                for kind, key, field in (("Secret", "secret", "secretName"),
                                         ("ConfigMap", "configMap", "name")):
                    if key in src:
                        ref = src[key].get(field) or src[key]["name"]
                        assert (kind, ref) in made or f"{kind} `{ref}`" in readme, (name, ref)


def test_kubernetes_labels_services_and_the_node_list_agree() -> None:
    docs = rendered("base")
    for d in docs:
        labels = d["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/part-of") == "edgesplit", d["metadata"]["name"]
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    for d in docs:
        if d["kind"] == "StatefulSet":  # a headless governing Service of the same name
            assert services[d["spec"]["serviceName"]]["spec"]["clusterIP"] == "None"
    assert {d["kind"] for d in docs} >= {"PodDisruptionBudget", "NetworkPolicy"}
    nodes = {a.split("=", 1)[1] for _, spec in pod_specs(docs)
             for a in spec["containers"][0]["command"] if a.startswith("--node-id=")}
    inventory = yaml.safe_load((K8S / "base" / "inventory.yaml").read_text())
    assert nodes == {n["id"] for n in inventory["nodes"]}
    assert all(n["address"] == f"{n['id']}:50051" and n["id"] in services
               for n in inventory["nodes"])
    monitor = next(d for d in docs if d["metadata"]["name"] == "monitor"
                   and d["kind"] == "Deployment")
    assert monitor["spec"]["replicas"] == 1 and monitor["spec"]["strategy"]["type"] == "Recreate"


def test_cert_manager_issues_each_component_its_own_identity() -> None:
    """Every workload's /etc/edgesplit/pki comes from the Certificate naming that
    component (the URI SAN the servers authorise), renamed to pki init's files;
    only the broadcaster gets the signing key."""
    docs = rendered("overlays/cert-manager")
    certs = {d["spec"]["secretName"]: d["spec"] for d in docs if d["kind"] == "Certificate"}
    (issuer,) = [d for d in docs if d["kind"] == "Issuer"]
    roles = {"node-agent": "node", "gateway": "gateway", "control-plane": ""}
    for d in docs:
        if d["kind"] not in WORKLOADS:
            continue
        name = d["metadata"]["name"]
        role = roles[d["metadata"]["labels"]["app.kubernetes.io/component"]] or name
        (pki,) = [v for v in d["spec"]["template"]["spec"]["volumes"] if v["name"] == "pki"]
        assert "secret" not in pki, name
        tls, *rest = pki["projected"]["sources"]
        spec = certs[tls["secret"]["name"]]
        assert spec["uris"] == [f"spiffe://edgesplit/{role}/{name}"], name
        assert name in spec["dnsNames"] and "127.0.0.1" in spec["ipAddresses"], name
        assert {"server auth", "client auth"} <= set(spec["usages"]), name
        assert spec["issuerRef"]["name"] == issuer["metadata"]["name"], name
        assert {i["path"] for i in tls["secret"]["items"]} == {"ca.pem", "tls.pem", "tls.key"}
        extra = [next(iter(s.values()))["name"] for s in rest]
        assert extra == (["edgesplit-control-signing-key"] if name == "broadcaster" else
                         ["edgesplit-control-public-key"] if role == "node" else []), name
    assert {d["metadata"].get("namespace") for d in docs if d["apiVersion"] == CERT_MANAGER} \
        == {"edgesplit"}


def test_gpu_overlay_asks_for_a_gpu_node() -> None:
    (gpu,) = [spec for name, spec in pod_specs(rendered("overlays/gpu")) if name == "node-c"]
    c = gpu["containers"][0]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "1" and "--device=cuda" in c["command"]
    assert gpu["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert gpu["nodeSelector"] == {"nvidia.com/gpu.present": "true"}


def test_kubernetes_commands_name_real_modules_and_flags() -> None:
    modules = set()
    for _, spec in pod_specs(rendered("base")):
        for c in spec["containers"]:
            cmd = c["command"]
            module = cmd[2]
            modules.add(module)
            config_mod = importlib.import_module(f"services.{module.rsplit('.', 1)[-1]}.config")
            cls = next(v for v in vars(config_mod).values() if isinstance(v, type)
                       and issubclass(v, ServiceConfig) and v is not ServiceConfig)
            load_config(cls, cmd[3:], env={})  # SystemExit on an unknown flag
    assert modules == {f"services.{s}" for s in ("monitor", "split_reviser", "broadcaster",
                                                  "orchestrator", "node_agent", "gateway")}


def _exercised_registry() -> str:
    """Import every service's metrics, give each kind a sample, return the exposition."""
    from prometheus_client import REGISTRY, generate_latest

    import services.broadcaster.metrics
    import services.node_agent.metrics as na
    import services.orchestrator.loop
    import services.split_reviser.servicer  # noqa: F401
    from edgesplit.rpc.convert import duration
    from edgesplit.v1 import monitor_pb2 as mpb
    from services.monitor import metrics as mon

    state = mpb.EnvironmentState(requests_total=3, window_requests=3, sla_hit_rate=0.5)
    for node, alive in (("n1", True), ("n2", True), ("n3", False)):
        v = state.nodes.add(reports=2, has_gpu=True)
        v.state.node_id, v.state.alive = node, alive
    state.link_views.add(src="n1", dst="n2", rtt=duration(0.01), bandwidth_bps=8e6)
    state.link_views.add(src="n1", dst="n3", rtt=duration(0.01), bandwidth_bps=8e6)
    mon.publish(state)
    na.REQUEST_SECONDS.labels("ok").observe(0.5)
    na.QUEUE_SECONDS.observe(0.01)
    return generate_latest(REGISTRY).decode()


def test_metrics_pass_promtool_and_drop_dead_nodes() -> None:
    exposition = _exercised_registry()
    assert 'edgesplit_node_alive{node="n3"} 0.0' in exposition
    assert 'node="n3"' not in exposition.replace('edgesplit_node_alive{node="n3"}', "") \
        .replace('edgesplit_node_last_report_age_seconds{node="n3"}', "")
    assert 'dst="n3"' not in exposition  # its links are retired with it
    assert "edgesplit_build_info{" in exposition
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (apt-get install prometheus)")
    out = subprocess.run([promtool, "check", "metrics"], input=exposition, text=True,
                         capture_output=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_compose_init_script_imports() -> None:
    """The init job runs only inside the image; importing it here catches a moved
    import (its `profile_json` once pointed at a module that no longer had it)."""
    spec = importlib.util.spec_from_file_location("compose_init", ROOT / "deploy/compose/init.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert callable(module.main) and callable(module.inventory)
