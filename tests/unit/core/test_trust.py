"""Trust: one rule (``trusts``), one check (``untrusted_sensitive``), one list format."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from edgesplit.core.cost import evaluate
from edgesplit.core.planner_instances import small_instance
from edgesplit.core.route import route_from_cuts
from edgesplit.core.trust import listed, rule_of, trusted_by_all, trusts, untrusted_sensitive
from edgesplit.core.types import (
    ClusterState,
    Epoch,
    LinkState,
    NodeId,
    NodeState,
    Plan,
    Privacy,
    Trust,
    Weights,
    Workload,
)

E, P, Q, U = NodeId("entry"), NodeId("p"), NodeId("q"), NodeId("u")
PHONE = NodeId("phone")


def node(node_id: NodeId, trusted: bool, *by: NodeId) -> NodeState:
    return NodeState(node_id, Trust.TRUSTED if trusted else Trust.UNTRUSTED, 1 << 30, 1e12,
                     trusted_by=by)


def test_the_rule() -> None:
    assert trusts(node(P, True), E)  # trusted, any entry
    assert not trusts(node(U, False), E)
    assert trusts(node(Q, True, E), E) and not trusts(node(Q, True, E), PHONE)
    assert trusts(node(E, True, PHONE), E)  # a trusted entry trusts itself
    assert not trusts(node(E, False), E)  # an untrusted one does not: no privacy=high there


def test_the_list_the_assignments_carry() -> None:
    nodes = [node(E, True), node(P, True), node(Q, True, E), node(U, False), node(PHONE, True)]
    assert trusted_by_all(nodes, [E]) == (E, P, Q, PHONE)
    assert trusted_by_all(nodes, [E, PHONE]) == (E, P, PHONE)  # q only trusts entry


def test_the_check_names_untrusted_holders_of_sensitive_parts() -> None:
    rule = rule_of([node(E, True), node(P, True), node(U, False)])
    # depth 2: embed and layers 0..1 are sensitive, head too
    assert untrusted_sensitive(route_from_cuts(E, [E, U], [2], 8), 2, rule) == ()
    assert untrusted_sensitive(route_from_cuts(E, [E, U], [1], 8), 2, rule) == (U,)
    assert untrusted_sensitive(route_from_cuts(E, [U, P], [4], 8), 2, rule) == (U,)
    assert untrusted_sensitive(route_from_cuts(E, [P, U], [2], 8), 2, rule) == ()
    assert untrusted_sensitive(route_from_cuts(E, [E, NodeId("ghost")], [0], 8), 1, rule) == (
        NodeId("ghost"),)  # unknown nodes are not trusted
    untrusted_entry = rule_of([node(E, False), node(P, True)])
    assert untrusted_sensitive(route_from_cuts(E, [E, P], [4], 8), 0, untrusted_entry) == (E,)


@pytest.mark.parametrize("seed", range(24))
def test_planner_cost_entry_and_broadcaster_agree(seed: int) -> None:
    """The cost model's privacy penalty, the check over the inventory (planner,
    triggers) and the check over the signed list (entry, broadcaster) give one
    answer for every route."""
    rng = random.Random(seed)
    state, profile, _ = small_instance(rng)
    entry = state.nodes[0].node_id
    # Room and links everywhere (so every route is costed); some trusted nodes
    # trust only another entry.
    nodes = tuple(replace(n, alive=True, memory_bytes=1 << 50,
                          trust=Trust.TRUSTED if i == 0 or rng.random() < 0.5 else Trust.UNTRUSTED,
                          trusted_by=(PHONE,) if i and rng.random() < 0.3 else ())
                  for i, n in enumerate(state.nodes))
    state = ClusterState(nodes, tuple(LinkState(a.node_id, b.node_id, 0.01, 1e9)
                                      for a in nodes for b in nodes if a != b))
    others = [n.node_id for n in state.nodes[1:]]
    rng.shuffle(others)
    most = min(3, len(others), profile.num_layers - 1)
    hops = others[: rng.randint(min(1, most), most)]
    cuts = sorted(rng.sample(range(1, profile.num_layers), len(hops)))
    route = route_from_cuts(entry, [entry, *hops], cuts, profile.num_layers)
    depth = rng.randint(0, 3)
    by_inventory = untrusted_sensitive(route, depth, rule_of(state.nodes))
    by_list = untrusted_sensitive(route, depth, listed(trusted_by_all(state.nodes, [entry])))
    assert by_inventory == by_list
    low = Workload(privacy=Privacy.LOW, privacy_depth=depth)
    cost = evaluate(Plan(Epoch(1), "", (route,)), state, profile, low, Weights())
    assert cost.feasible, cost.reason
    assert (cost.privacy_penalty > 0) == bool(by_inventory), route
