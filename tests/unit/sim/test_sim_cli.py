"""``edgesplit sim`` from the command line: JSON and the two plots."""

from __future__ import annotations

import json
from pathlib import Path

from edgesplit.cli import main
from edgesplit.sim.runs import TABLE5_KEYS, find_scenario


def test_sim_run_prints_every_mode_and_writes_the_plots(tmp_path: Path, capsys) -> None:
    rc = main(["sim", "run", "smart-city", "--hours", "0.01", "--seed", "1", "--json",
               "--out", str(tmp_path)])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["results"]) == {"static", "single-device", "adaptive"}
    for figures in out["results"].values():
        for key in (*TABLE5_KEYS, "p99_ms", "reconfigurations", "time_to_reconfigure_ms"):
            assert key in figures
        assert figures["duration_s"] == 36.0
    for png in out["plots"]:
        assert Path(png).read_bytes()[:4] == b"\x89PNG"


def test_builtin_mec_scenarios_load_with_real_models_and_hardware() -> None:
    from edgesplit.sim.setup import build_setup

    for name, layers in (("mec-7b", 32), ("mec-13b", 40)):
        setup = build_setup(find_scenario(name))
        assert setup.profile.num_layers == layers
        classes = {n.hw.name for n in setup.nodes}
        assert {"jetson-agx-orin", "h100"} <= classes and len(classes) >= 5
        assert sum(n.entry for n in setup.nodes) == 1
        assert all(lk.trace for lk in setup.links)
