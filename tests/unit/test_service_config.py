"""Service configuration: defaults < YAML < EDGESPLIT_* < flags, real boolean
flags, checked ranges, and errors that name the setting instead of a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from edgesplit.rpc.config import ServiceConfig, load_config
from services.broadcaster.config import BroadcasterConfig
from services.monitor.config import MonitorConfig
from services.node_agent.config import NodeAgentConfig
from services.orchestrator.config import OrchestratorConfig
from services.split_reviser.config import SplitReviserConfig

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = [BroadcasterConfig, MonitorConfig, NodeAgentConfig, OrchestratorConfig,
           SplitReviserConfig]


def refused(cls: type[ServiceConfig], argv: list[str], capsys: pytest.CaptureFixture[str],
            env: dict[str, str] | None = None) -> str:
    """The one-line error of a refused configuration (argparse exits 2)."""
    with pytest.raises(SystemExit) as exit_:
        load_config(cls, argv, env=env or {})
    assert exit_.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_layers_in_order(tmp_path: Path) -> None:
    path = tmp_path / "monitor.yaml"
    path.write_text("alpha: 0.5\nlayer-alpha: 0.6\nlink_alpha: 0.7\nmissed_cycles: 9\n")
    env = {"EDGESPLIT_LAYER_ALPHA": "0.65", "EDGESPLIT_LINK_ALPHA": "0.75"}
    config = load_config(MonitorConfig, ["--config", str(path), "--link-alpha", "0.8"], env=env)
    assert (config.alpha, config.layer_alpha, config.link_alpha) == (0.5, 0.65, 0.8)
    assert config.missed_cycles == 9  # from the file
    assert config.latency_alpha == 0.2  # default


def test_booleans_are_real_flags(capsys: pytest.CaptureFixture[str]) -> None:
    assert load_config(MonitorConfig, ["--enroll-open"], env={}).enroll_open is True
    assert load_config(MonitorConfig, ["--enroll-open", "--no-enroll-open"],
                       env={}).enroll_open is False
    assert "unrecognized arguments: treu" in refused(MonitorConfig, ["--enroll-open", "treu"],
                                                     capsys)
    assert load_config(MonitorConfig, [], env={"EDGESPLIT_ENROLL_OPEN": "yes"}).enroll_open
    line = refused(MonitorConfig, [], capsys, env={"EDGESPLIT_ENROLL_OPEN": "treu"})
    assert "enroll_open" in line and "EDGESPLIT_ENROLL_OPEN" in line and "'treu'" in line


@pytest.mark.parametrize(("cls", "argv", "setting"), [
    (MonitorConfig, ["--missed-cycles", "-3"], "missed_cycles"),
    (MonitorConfig, ["--alpha", "7"], "alpha"),
    (MonitorConfig, ["--alpha", "0"], "alpha"),  # would freeze the average
    (OrchestratorConfig, ["--margin", "1.5"], "margin"),
    (OrchestratorConfig, ["--interval-s", "0"], "interval_s"),
    (OrchestratorConfig, ["--wire-dtype", "int4"], "wire_dtype"),
    (NodeAgentConfig, ["--max-sessions", "0"], "max_sessions"),
    (NodeAgentConfig, ["--device", "gpu"], "device"),
    (NodeAgentConfig, ["--utilization-scope", "host"], "utilization_scope"),
    (BroadcasterConfig, ["--commit-attempts", "0"], "commit_attempts"),
    (SplitReviserConfig, ["--rpc-timeout-s", "-1"], "rpc_timeout_s"),
])
def test_out_of_range_values_are_refused(cls: type[ServiceConfig], argv: list[str],
                                         setting: str, capsys: pytest.CaptureFixture[str]) -> None:
    line = refused(cls, argv, capsys)
    assert f"setting {setting} (from {argv[0]})" in line


def test_a_bad_number_names_the_setting_not_a_traceback() -> None:
    run = subprocess.run([sys.executable, "-m", "services.monitor", "--alpha", "x"],
                         check=False, capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    assert "setting alpha (from --alpha): Input should be a valid number" in run.stderr


def test_file_errors_name_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("bogus: 1\n")
    assert refused(MonitorConfig, ["--config", str(path)], capsys) \
        .endswith(f"unknown setting 'bogus' (from --config {path})")
    path.write_text("missed_cycles: 0\n")
    assert f"setting missed_cycles (from --config {path})" in \
        refused(MonitorConfig, ["--config", str(path)], capsys)
    path.write_text("- a list\n")
    with pytest.raises(SystemExit, match="expected a mapping"):
        load_config(MonitorConfig, ["--config", str(path)], env={})


def test_lists_from_flags_env_and_files(tmp_path: Path) -> None:
    assert load_config(OrchestratorConfig, ["--entries", "a,b"], env={}).entries == ("a", "b")
    assert load_config(OrchestratorConfig, ["--entries", "a", "--entries", "b"],
                       env={}).entries == ("a", "b")
    assert load_config(OrchestratorConfig, [], env={"EDGESPLIT_ENTRIES": "x, y"}).entries \
        == ("x", "y")
    (tmp_path / "o.yaml").write_text("entries: [p, q]\n")
    assert load_config(OrchestratorConfig, ["--config", str(tmp_path / "o.yaml")],
                       env={}).entries == ("p", "q")


def test_keywords_validate_and_read_nothing_else(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGESPLIT_ALPHA", "0.9")
    assert MonitorConfig().alpha == 0.3  # the environment is load_config's, not the model's
    assert MonitorConfig(alpha=0.5).alpha == 0.5
    with pytest.raises(ValidationError, match="missed_cycles"):
        MonitorConfig(missed_cycles=-3)
    with pytest.raises(ValidationError, match="bogus"):
        MonitorConfig(bogus=1)  # type: ignore[call-arg]
    config = NodeAgentConfig(node_id="n")
    with pytest.raises(ValidationError):
        config.node_id = "other"  # type: ignore[misc]  # frozen


@pytest.mark.parametrize("cls", CONFIGS)
def test_every_setting_has_help_and_shows_its_default(
        cls: type[ServiceConfig], capsys: pytest.CaptureFixture[str]) -> None:
    for name, field in cls.model_fields.items():
        assert field.description, f"{cls.__name__}.{name} has no help text"
    with pytest.raises(SystemExit):
        load_config(cls, ["--help"], env={})
    text = " ".join(capsys.readouterr().out.split())
    for name, field in cls.model_fields.items():
        flag = "--" + name.replace("_", "-")
        assert flag in text, flag
        assert f"(default: {field.default})" in text, flag


@pytest.mark.parametrize("cls", CONFIGS)
def test_defaults_load_without_input(cls: type[ServiceConfig]) -> None:
    assert load_config(cls, [], env={}) == cls()
