"""The wheel is complete: built from this checkout and installed into a fresh
venv (dependencies visible from this interpreter's site-packages, nothing
downloaded), ``edgesplit`` runs from any directory with what the wheel holds —
its built-in scenarios included — and its metadata keeps build and test tools
out of the run-time dependencies."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD_ONLY = ("grpcio-tools", "scipy", "numpy", "pytest", "ruff", "mypy", "hypothesis")


def clean_env() -> dict[str, str]:
    # No PYTHONPATH: the checkout must not stand in for what was installed.
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # Build from a copy: setuptools writes build/ and *.egg-info beside the source.
    src = tmp_path_factory.mktemp("src") / "edgesplit"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "var", "out", "__pycache__", "*.egg-info", "build", ".*_cache"))
    # --no-build-isolation: setuptools from this venv, nothing downloaded.
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "--no-index", "-w", str(out), str(src)],
                   check=True, env=clean_env())
    (whl,) = out.glob("edgesplit-*.whl")
    return whl


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    env_dir = tmp_path_factory.mktemp("venv")
    venv.create(env_dir, with_pip=False)
    py = env_dir / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q",
                    "--no-deps", "--no-index", str(wheel)], check=True, env=clean_env())
    query = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(subprocess.run([str(py), "-c", query],
                               check=True, capture_output=True, text=True).stdout.strip())
    # The dependencies, as a plain path entry: no .pth of this venv runs there,
    # so an editable install of the checkout cannot shadow the wheel.
    (site / "_edgesplit_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return env_dir


def run(env_dir: Path, *args: str, cwd: Path, timeout: float = 120) -> str:
    out = subprocess.run([str(env_dir / "bin" / args[0]), *args[1:]], cwd=cwd, env=clean_env(),
                         capture_output=True, text=True, timeout=timeout, check=False)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


def test_wheel_ships_the_scenarios_and_stubs(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    builtin = sorted(n for n in names if n.startswith("edgesplit/scenario/builtin/"))
    assert builtin == sorted(f"edgesplit/scenario/builtin/{p.name}" for p in
                             (ROOT / "edgesplit" / "scenario" / "builtin").glob("*.yaml"))
    assert "edgesplit/scenario/__init__.py" in names
    assert "edgesplit/v1/inference_pb2.pyi" in names
    assert {"services/node_agent/__main__.py", "services/monitor/__main__.py"} <= names


def test_runtime_dependencies_hold_no_build_tools_and_one_grpc_release(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        meta_name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(z.read(meta_name).decode())
    requires = meta.get_all("Requires-Dist") or []
    runtime = [r for r in requires if "extra ==" not in r]
    names = {r.split("==")[0].split(";")[0].strip().lower() for r in runtime}
    assert not names & set(BUILD_ONLY), names & set(BUILD_ONLY)
    assert {"grpcio", "torch", "transformers", "cryptography", "prometheus-client"} <= names
    grpc_pins = {r.split("==")[1].split(";")[0].strip() for r in runtime
                 if r.lower().startswith("grpcio")}
    assert len(grpc_pins) == 1, grpc_pins
    assert any(r.startswith("scipy") and 'extra == "milp"' in r for r in requires)


def test_installed_wheel_lists_scenarios_from_anywhere(installed: Path, tmp_path: Path) -> None:
    query = "import edgesplit, services; print(edgesplit.__file__); print(services.__file__)"
    where = run(installed, "python", "-c", query, cwd=tmp_path)
    assert all(line.startswith(str(installed)) for line in where.split())
    listed = run(installed, "edgesplit", "scenario", "list", cwd=tmp_path)
    for name in ("smart-city", "factory", "v2x"):
        assert name in listed


@pytest.mark.slow
def test_installed_wheel_runs_a_ten_second_scenario(installed: Path, tmp_path: Path) -> None:
    out = run(installed, "edgesplit", "scenario", "run", "factory", "--mode", "adaptive",
              "--duration", "10", "--json", "--out", str(tmp_path / "out"), cwd=tmp_path,
              timeout=600)
    report = json.loads(out[out.index("{"):])["adaptive"]
    assert report["requests_ok"] > 0 and report["requests_failed"] == 0, report
    assert report["errors"] == []


def test_milp_without_its_extra_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from edgesplit.core import milp

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "scipy" else real(name, *a))
    with pytest.raises(ImportError, match=r"needs scipy: pip install 'edgesplit\[milp\]'"):
        milp.solve_milp(None, None, None, [])  # type: ignore[arg-type]  # checked first
