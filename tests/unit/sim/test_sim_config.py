"""One scenario file, one set of decision settings: the simulator builds the
control step's settings from a scenario's orchestrator flags exactly as the
real orchestrator builds them from the same flags on its command line (the
test bed passes each as ``--name value``), and refuses a flag it does not
model instead of dropping it (it once dropped ``max_replicas`` and ``delta``,
so smart-city-surge ran in the simulator with one route and another objective)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from edgesplit.core.control_flags import FLAGS
from edgesplit.scenario.spec import BUILTIN, load_scenario
from edgesplit.sim.setup import build_setup
from edgesplit.sim.simulation import Simulation
from services.orchestrator.config import OrchestratorConfig
from services.orchestrator.loop import control_config

SIM_SCENARIOS = Path(__file__).parents[3] / "edgesplit" / "sim" / "scenarios"
SCENARIOS = sorted([*BUILTIN.glob("*.yaml"), *SIM_SCENARIOS.glob("*.yaml")])


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_the_simulator_decides_with_the_orchestrators_settings(path: Path) -> None:
    sc = load_scenario(str(path))
    sim = Simulation(build_setup(sc), "adaptive", 0)
    mine = sim._decider_config()
    # What the scenario runner starts the orchestrator with; the cool-down is
    # a simulator setting (the test bed's runs use 10 s).
    flags = OrchestratorConfig(
        insecure=True, prompt_tokens=sc.load.prompt_tokens, new_tokens=sc.load.new_tokens,
        requests_per_s=sc.load.requests_per_s or sc.load.concurrency / 5.0,
        cooldown_s=sim.settings.cooldown_s, **sc.orchestrator)
    assert replace(control_config(flags), entries=mine.entries) == mine


def test_every_setting_of_the_step_is_an_orchestrator_flag() -> None:
    """The orchestrator reads the settings by these names from its own config."""
    assert FLAGS <= set(OrchestratorConfig.model_fields)


def test_a_flag_the_simulator_does_not_model_is_refused() -> None:
    sc = load_scenario("smart-city")
    sc = replace(sc, orchestrator={**sc.orchestrator, "wire_dtype": "bfloat16"})
    with pytest.raises(ValueError, match="wire_dtype"):
        Simulation(build_setup(sc), "adaptive", 0)


def test_an_entry_with_replicas_spreads_its_sessions_over_them() -> None:
    """With ``max_replicas`` the planner gives the 7B entry several routes under
    load, and the simulated entry places sessions on each, as the real one does
    (``core.route_choice``): every replica of every such plan decodes."""
    sc = load_scenario(str(SIM_SCENARIOS / "mec-7b.yaml"))
    sc = replace(sc, duration_s=600.0, events=tuple(e for e in sc.events if e.at < 600.0),
                 orchestrator={**sc.orchestrator, "max_replicas": 3})
    sim = Simulation(build_setup(sc), "adaptive", 0)
    log = sim.run()
    replicated = [p for _, p in log.plans.values() if len(p.routes) > 1]
    assert replicated, "no plan with replicas"
    for plan in replicated:
        assert all(id(r) in sim.dp.route_step for r in plan.routes), plan
