"""The simulated agents' reports: the shortcuts a thousand-node run takes
(probes with the trace lookup inlined, an idle node's resource sample and
counters kept from its last report) give the reports the plain code builds."""

from __future__ import annotations

import random
from dataclasses import replace

from edgesplit.core.reports import LinkObservation, LinkSource
from edgesplit.sim import express
from edgesplit.sim.agents import Agent
from edgesplit.sim.bench import bench_scenario
from edgesplit.sim.setup import build_setup
from edgesplit.sim.simulation import Simulation
from edgesplit.sim.world import probe


def test_probe_sees_what_link_figures_say_outages_and_dead_peers_included() -> None:
    sc, cells = bench_scenario(16, 2, 600.0)
    sim = Simulation(build_setup(sc), "adaptive", 0, regions=cells)
    agent = sim.agents.agents[sim.entries[0]]
    dead = agent.peers[1][2]
    dead.alive = False
    seen_outage = False
    for k in range(4000):  # ~11 minutes of traces in 0.17 s steps: rows, laps, outages
        now = 0.17 * k
        got = probe(agent.peers, now, random.Random(k).random)
        rand = random.Random(k).random
        want = []
        for peer, link, node in agent.peers:
            if not node.alive:
                continue
            bw, rtt = link.figures(now)
            want.append(LinkObservation(peer, rtt * (1.0 + 0.02 * (rand() - 0.5)),
                                        bw if bw > 0 else None, LinkSource.PROBE))
            seen_outage |= bw <= 0
        assert got == tuple(want)
    assert seen_outage and len(got) == len(agent.peers) - 1


def _fresh(a: Agent) -> Agent:
    """The agent with nothing kept from its last report but what a real agent keeps."""
    return replace(a, resources=None, resources_of=None, idle=None, finished=list(a.finished))


def test_kept_figures_give_the_report_a_fresh_build_gives() -> None:
    sc, cells = bench_scenario(16, 2, 240.0, requests_per_s=0.3, report_interval_s=1.0)
    sim = Simulation(build_setup(sc), "adaptive", 0, regions=cells)
    agents = sim.agents
    real = agents.report
    checked = {"idle": 0, "busy": 0, "kept": 0}

    def report(a: Agent, now: float):  # type: ignore[no-untyped-def]
        node = a.node
        if node.express is not None:  # count the express passes up to now first
            express.catch_up(sim.dp, node.express.chunk, now)
        state = (node.busy_since_report, node.seq, a.last_at, a.busy_at, a.prev, a.shards)
        rng = agents.rand
        twin = _fresh(a)
        # The same report built without anything kept, from the same state and draws.
        agents.rand = random.Random(now).random
        fresh = real(twin, now)
        node.busy_since_report, node.seq = state[0], state[1]
        agents.rand = random.Random(now).random
        kept_resources = a.resources
        out = real(a, now)
        agents.rand = rng
        if out is None:
            return out
        assert out[0] == fresh[0] and out[1] == fresh[1]
        assert twin.prev == a.prev
        idle = state[3] == node.busy_s and state[4] is not None
        checked["idle" if idle else "busy"] += 1
        checked["kept"] += a.resources is kept_resources
        return out

    agents.report = report  # type: ignore[method-assign]
    sim.run()
    assert checked["idle"] > 1000 and checked["busy"] > 100 and checked["kept"] > 1000
