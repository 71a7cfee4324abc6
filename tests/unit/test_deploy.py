"""deploy/compose.yaml is valid for docker-compose and every service command
names a module that exists, with flags its config accepts."""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from edgesplit.rpc.config import ServiceConfig, load_config

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose.yaml"


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


def test_compose_config_is_valid_and_healthchecked() -> None:
    services = _resolved()["services"]
    assert isinstance(services, dict)
    assert {"monitor", "orchestrator", "split_reviser", "broadcaster"} <= set(services)
    nodes = [n for n, s in services.items() if "services.node_agent" in s["command"]]
    assert len(nodes) >= 3
    for name, svc in services.items():
        assert "grpc_health" in " ".join(svc["healthcheck"]["test"]), name
        for dep in (svc.get("depends_on") or {}).values():
            assert dep["condition"] == "service_healthy", name
    gpu = services["node-gpu"]
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]


def test_compose_commands_name_real_modules_and_flags() -> None:
    raw = yaml.safe_load(COMPOSE.read_text())
    for name, svc in raw["services"].items():
        cmd = svc["command"]
        assert cmd[:2] == ["python", "-m"], name
        module = cmd[2]
        assert importlib.util.find_spec(module) is not None, f"{name}: no module {module}"
        package = module.rsplit(".", 1)[-1]
        config_mod = importlib.import_module(f"services.{package}.config")
        classes = [c for c in vars(config_mod).values()
                   if isinstance(c, type) and issubclass(c, ServiceConfig) and c is not ServiceConfig]
        assert classes, f"{name}: no config class"
        env = {k: str(v) for k, v in (svc.get("environment") or {}).items()}
        load_config(classes[0], cmd[3:], env=env)  # raises SystemExit on a bad flag


def test_kubernetes_manifests_name_real_modules_flags_and_probes() -> None:
    docs = [d for f in sorted((ROOT / "deploy" / "k8s").glob("*.yaml"))
            for d in yaml.safe_load_all(f.read_text()) if d]
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "StatefulSet", "DaemonSet", "Service"} <= kinds
    modules = set()
    for d in docs:
        if d["kind"] not in ("Deployment", "StatefulSet", "DaemonSet"):
            continue
        for c in d["spec"]["template"]["spec"]["containers"]:
            cmd = c["command"]
            module = cmd[2]
            modules.add(module)
            config_mod = importlib.import_module(f"services.{module.rsplit('.', 1)[-1]}.config")
            cls = next(v for v in vars(config_mod).values() if isinstance(v, type)
                       and issubclass(v, ServiceConfig) and v is not ServiceConfig)
            env = {e["name"]: e.get("value", "x") for e in c.get("env", [])}
            load_config(cls, cmd[3:], env=env)  # SystemExit on an unknown flag
            assert c["readinessProbe"]["grpc"]["port"] == 50051
    assert modules == {f"services.{s}" for s in
                       ("monitor", "split_reviser", "broadcaster", "orchestrator", "node_agent")}
