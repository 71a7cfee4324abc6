"""``sim bench`` runs its cells as independent parts: the parts hold every node
once, the events and load of their cells, and the result does not depend on
how many processes share them."""

from __future__ import annotations

import pytest

from edgesplit.sim.bench import bench, bench_scenario, partition

TIMING = {"wall_s", "simulated_s_per_wall_s", "cpu_s", "simulated_s_per_cpu_s",
          "events_per_wall_s", "planner_wall_s", "planner_calls_per_wall_s",
          "planner_ms_mean", "workers"}


def test_parts_hold_every_node_once_with_their_events_links_and_load() -> None:
    sc, cells = bench_scenario(60, 6, 600.0, requests_per_s=0.5)
    parts = partition(sc, cells, 3)
    ids = [n.id for part, _ in parts for n in part.nodes]
    assert sorted(ids) == sorted(n.id for n in sc.nodes)
    assert sum(len(c) for _, c in parts) == len(cells)
    assert sorted(e.at for part, _ in parts for e in part.events) == [e.at for e in sc.events]
    assert sum(p.load.requests_per_s for p, _ in parts) == pytest.approx(sc.load.requests_per_s)
    kept = {(lk.a, lk.b) for part, _ in parts for lk in part.links}
    for part, _ in parts:
        mine = {n.id for n in part.nodes}
        assert all(lk.a in mine and lk.b in mine for lk in part.links)
    dropped = [lk for lk in sc.links if (lk.a, lk.b) not in kept]
    # only the metro links that join one part's last cell to the next part's first
    assert dropped and len(dropped) <= 2 * 3
    assert all(lk.a.startswith("mec-") and lk.b.startswith("mec-") for lk in dropped)


def test_the_result_does_not_depend_on_the_number_of_workers() -> None:
    one = bench(40, 4, 240.0, seed=3, parts=2, workers=1)
    two = bench(40, 4, 240.0, seed=3, parts=2, workers=2)
    assert one["requests"] > 0 and one["parts"] == 2
    assert {k: v for k, v in one.items() if k not in TIMING} == \
        {k: v for k, v in two.items() if k not in TIMING}


def test_parts_must_fit_the_cells() -> None:
    sc, cells = bench_scenario(20, 2, 60.0)
    with pytest.raises(ValueError, match="parts"):
        partition(sc, cells, 3)
