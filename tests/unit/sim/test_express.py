"""Express decode steps (``edgesplit.sim.express``, and ``edgesplit.sim.group``
for sessions sharing a route) are a shortcut, not a model: a run with them
gives the per-hop run's figures, also when sessions overlap, plans change and
nodes die in the middle of an express stretch; and the control loop's
quiet-interval precheck never skips a step that would act."""

from __future__ import annotations

import pytest

from edgesplit.scenario.spec import load_scenario
from edgesplit.sim import dataplane, express, group
from edgesplit.sim.bench import bench_scenario
from edgesplit.sim.metrics import summarize
from edgesplit.sim.setup import build_setup
from edgesplit.sim.simulation import Simulation


def _both(sc, regions=None, mode: str = "adaptive") -> tuple[dict, dict, Simulation]:  # type: ignore[no-untyped-def]
    out = []
    for fast in (False, True):
        sim = Simulation(build_setup(sc, {"express": fast}), mode, 0, regions=regions)
        out.append((summarize(sim, sim.run()), sim))
    (slow, _), (fast, sim) = out
    return slow, fast, sim


def _figures(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k != "events_simulated"}


def test_express_gives_the_per_hop_figures_through_overlaps_failures_and_replans(
        monkeypatch) -> None:
    settled, derailed = [], []
    real_settle = express.settle

    def settle(dp, s, chunk, now):  # type: ignore[no-untyped-def]
        done = real_settle(dp, s, chunk, now)
        (settled if done else derailed).append(now)
        return done

    monkeypatch.setattr(express, "settle", settle)
    # Two cells, enough load that sessions overlap, a MEC node killed and
    # restarted, an overload: express stretches end early (derail) as well as in full.
    sc, cells = bench_scenario(16, 2, 360.0, requests_per_s=0.4, report_interval_s=1.0)
    slow, fast, sim = _both(sc, cells)
    assert _figures(fast) == _figures(slow)
    assert fast["events_simulated"] < slow["events_simulated"]
    assert settled and derailed
    assert slow["requests"] > 150 and slow["reconfigurations"] >= 1
    assert not sim.dp.expressing and all(n.express is None for n in sim.nodes.values())
    assert all(n.users == 0 for n in sim.nodes.values())  # every session let go of its route


@pytest.mark.parametrize("mode", ["adaptive", "static"])
def test_express_gives_the_per_hop_figures_on_a_test_bed_scenario(mode: str) -> None:
    slow, fast, _ = _both(load_scenario("smart-city"), mode=mode)
    assert _figures(fast) == _figures(slow)


def test_quiet_interval_precheck_only_skips_steps_that_wait(monkeypatch) -> None:
    from edgesplit.core import control

    skipped = []
    real = control.surely_waits

    def surely_waits(env, plan, history, now, config, inventory):  # type: ignore[no-untyped-def]
        waits = real(env, plan, history, now, config, inventory)
        if waits:
            obs = control.observe_environment(env, inventory, sim.setup.profile, config)
            action = control.step(obs, plan, history, now, config)
            assert isinstance(action, control.Wait), action
            skipped.append(now)
        return waits

    monkeypatch.setattr(control, "surely_waits", surely_waits)
    sim = Simulation(build_setup(load_scenario("smart-city")), "adaptive", 0)
    sim.run()
    assert len(skipped) > 20 and sim.log.reconfigurations


def _records(sim: Simulation) -> list:  # type: ignore[type-arg]
    return sorted((r.arrived, r.entry, r.ok, r.ttft_s, r.steps_s, r.epochs)
                  for r in sim.log.records)


def test_sessions_sharing_a_route_express_to_the_per_hop_floats(monkeypatch) -> None:
    ends: list[bool] = []
    real_settle = group.settle

    def settle(dp, g, t, upto=True):  # type: ignore[no-untyped-def]
        ends.append(upto)  # upto=False: the group ran to its end; True: derailed
        real_settle(dp, g, t, upto)

    monkeypatch.setattr(group, "settle", settle)
    sc, cells = bench_scenario(16, 2, 360.0, requests_per_s=0.4, report_interval_s=1.0)
    runs = []
    for fast in (False, True):
        sim = Simulation(build_setup(sc, {"express": fast}), "adaptive", 0, regions=cells)
        sim.run()
        runs.append(sim)
    slow, fast = runs
    # Every step of every request to the same float, and the same plans.
    assert _records(fast) == _records(slow)
    assert [(r.decided_at, r.epoch, r.action) for r in fast.log.reconfigurations] == [
        (r.decided_at, r.epoch, r.action) for r in slow.log.reconfigurations]
    assert ends.count(False) > 50 and ends.count(True) > 20
    assert fast.clock.events < slow.clock.events / 3


def test_a_node_never_runs_two_passes_at_once(monkeypatch) -> None:
    real = dataplane.DataPlane._start_pass
    starts = []

    def start_pass(self, node):  # type: ignore[no-untyped-def]
        assert not node.running, f"{node.node_id} started a pass beside the one it runs"
        starts.append(node.node_id)
        real(self, node)

    monkeypatch.setattr(dataplane.DataPlane, "_start_pass", start_pass)
    # Two sessions batched into one pass end their steps on their entry, which
    # also runs their next first hop: the second must wait for the first.
    sc, cells = bench_scenario(16, 2, 120.0, requests_per_s=0.4, report_interval_s=1.0)
    Simulation(build_setup(sc, {"express": False}), "adaptive", 0, regions=cells).run()
    assert len(starts) > 10000
