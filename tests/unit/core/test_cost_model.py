"""The cost model against figures worked out by hand on a two-node ring."""

from __future__ import annotations

import math

import pytest

from edgesplit.core.cost import (
    MIN_FREE_FRACTION,
    evaluate,
    hop_seconds,
    layer_times,
    memory_use,
    objective,
)
from edgesplit.core.types import (
    EMBED_ONLY,
    HEAD_ONLY,
    ClusterState,
    Epoch,
    LayerCost,
    LinkState,
    ModelProfile,
    NodeId,
    NodeState,
    Part,
    Plan,
    Privacy,
    Route,
    Segment,
    Trust,
    Weights,
    Workload,
)

A, B = NodeId("A"), NodeId("B")
PROFILE = ModelProfile(
    name="two",
    layers=(LayerCost(100, 1e9, 1), LayerCost(100, 1e9, 1)),
    embed=LayerCost(10, 0.0, 0),
    head=LayerCost(10, 1e9, 0),
    activation_bytes_per_token=1000,
)
WORKLOAD = Workload(
    prompt_tokens=10,
    new_tokens=30,
    requests_per_s=0.5,
    privacy=Privacy.LOW,
    privacy_depth=2,
    kv_budget_tokens=16,
)
WEIGHTS = Weights(alpha=1.0, beta=0.1, gamma=10.0)


def cluster(mem_a: int = 136, mem_b: int = 116, alive_b: bool = True) -> ClusterState:
    return ClusterState(
        nodes=(
            NodeState(A, Trust.TRUSTED, mem_a, 1e12),
            # 4 TFLOP/s at 50% background load: 2 TFLOP/s for us.
            NodeState(B, Trust.UNTRUSTED, mem_b, 4e12, utilization=0.5, alive=alive_b),
        ),
        links=(
            LinkState(A, B, rtt_s=0.010, bandwidth_bps=8e6),  # 1 MB/s
            LinkState(B, A, rtt_s=0.020, bandwidth_bps=16e6),  # 2 MB/s
        ),
    )


# A: embed + layer 0, B: layer 1, back to A for head.
PLAN = Plan(
    Epoch(1),
    "",
    (
        Route(
            A,
            (
                Segment(A, 0, 1, EMBED_ONLY),
                Segment(B, 1, 2),
                Segment(A, 2, 2, HEAD_ONLY),
            ),
        ),
    ),
)


def test_primitives() -> None:
    layers, embed, head = layer_times(cluster().nodes[1], PROFILE)
    assert layers == [pytest.approx(0.5e-3), pytest.approx(0.5e-3)]  # 1e9 / 2e12
    assert embed == 0.0 and head == pytest.approx(0.5e-3)
    # Half the RTT plus serialisation: 5 ms + 1000 B * 8 / 8 Mbit/s.
    assert hop_seconds(cluster().links[0], 1, 1000) == pytest.approx(0.006)
    assert hop_seconds(cluster().links[0], 10, 1000) == pytest.approx(0.015)
    assert hop_seconds(None, 1, 1000) == math.inf


def test_measured_times_win_and_saturated_nodes_stay_finite() -> None:
    node = NodeState(
        A,
        Trust.TRUSTED,
        1,
        1e12,
        utilization=1.0,
        layer_seconds=((1, 0.007), (Part.EMBED, 0.001), (Part.HEAD, 0.002)),
    )
    layers, embed, head = layer_times(node, PROFILE)
    assert layers[1] == 0.007 and embed == 0.001 and head == 0.002
    assert layers[0] == pytest.approx(1e9 / (1e12 * MIN_FREE_FRACTION))


def test_two_node_ring_by_hand() -> None:
    cost = evaluate(PLAN, cluster(), PROFILE, WORKLOAD, WEIGHTS)
    assert cost.feasible, cost.reason
    # compute: A layer 0 1 ms + head 1 ms; B layer 1 0.5 ms. hops: A->B 6 ms, B->A 10.5 ms.
    assert cost.latency_s == pytest.approx(0.019)
    assert cost.mean_latency_s == pytest.approx(0.019)
    # prefill of 10 tokens: 10 * 2.5 ms compute; hops 5 + 10 ms and 10 + 5 ms.
    assert cost.ttft_s == pytest.approx(0.055)
    # slowest stage: A's 2 ms per token (links serialise in 1 and 0.5 ms).
    assert cost.bottleneck_s == pytest.approx(0.002)
    # 0.5 req/s * 40 tokens * busy per token: A 2 ms -> 0.04; B 0.5 + 0.5 ms -> 0.51.
    util = dict(cost.per_node_utilization)
    assert util[A] == pytest.approx(0.04) and util[B] == pytest.approx(0.51)
    assert cost.imbalance == pytest.approx(0.47)
    # layer 1 is sensitive (depth 2) and sits on untrusted B.
    assert cost.privacy_penalty == 1
    # Own load (not background) queues: A 0.04 on a 2 ms step, B 0.01 on 0.5 ms.
    queueing = 0.002 * 0.04 / 0.96 + 0.0005 * 0.01 / 0.99
    assert cost.queueing_s == pytest.approx(queueing)
    assert cost.capacity_rps == pytest.approx(0.5 / 0.04)  # A saturates first
    assert cost.total == pytest.approx(0.019 + 0.1 * 0.47 + 10 * 1)  # delta 0: the seed's
    with_queueing = evaluate(PLAN, cluster(), PROFILE, WORKLOAD, Weights(1.0, 0.1, 10.0, 2.0))
    assert with_queueing.total == pytest.approx(cost.total + 2.0 * queueing)
    assert objective(cost, WEIGHTS) == pytest.approx(0.019 + 10)
    # weights + KV (1 B/token * 16 tokens): A 10 + 10 + 100 + 16, B 100 + 16.
    assert memory_use(PLAN.routes, PROFILE, WORKLOAD) == {A: 136, B: 116}


def test_infeasible_plans_say_why() -> None:
    def why(state: ClusterState, plan: Plan = PLAN, wl: Workload = WORKLOAD) -> str:
        cost = evaluate(plan, state, PROFILE, wl, WEIGHTS)
        assert not cost.feasible and cost.total == math.inf
        return cost.reason

    assert "node B needs 116 bytes, has 115" in why(cluster(mem_b=115))
    assert "dead node B" in why(cluster(alive_b=False))
    high = Workload(
        **{**{f: getattr(WORKLOAD, f) for f in WORKLOAD.__slots__}, "privacy": Privacy.HIGH}
    )
    assert "privacy=high" in why(cluster(), wl=high)
    no_link = ClusterState(cluster().nodes, cluster().links[:1])
    assert "without a link" in why(no_link)
    twice = Plan(
        Epoch(1),
        "",
        (
            Route(
                A,
                (
                    Segment(A, 0, 0, EMBED_ONLY),
                    Segment(B, 0, 1),
                    Segment(A, 1, 1),
                    Segment(B, 1, 2),
                    Segment(A, 2, 2, HEAD_ONLY),
                ),
            ),
        ),
    )
    assert "middle" in why(cluster(), twice)
    gap = Plan(Epoch(1), "", (Route(A, (Segment(A, 0, 1, EMBED_ONLY), Segment(A, 1, 1, HEAD_ONLY))),))
    assert "covers layers [0, 1) of 2" in why(cluster(), gap)


def test_shared_layers_are_loaded_once() -> None:
    both = Plan(
        Epoch(1),
        "",
        (
            PLAN.routes[0],
            Route(B, (Segment(B, 0, 2, EMBED_ONLY), Segment(B, 2, 2, HEAD_ONLY))),
        ),
    )
    use = memory_use(both.routes, PROFILE, WORKLOAD)
    # B: layers 0-1 once (200) + embed + head (20) + KV of layer 1 twice and layer 0 once (48).
    assert use[B] == 200 + 20 + 48
    cost = evaluate(both, cluster(mem_b=268), PROFILE, WORKLOAD, WEIGHTS)
    assert cost.feasible, cost.reason
    assert cost.latency_s > cost.mean_latency_s  # the worst route is the two-node ring


ALONE = Route(A, (Segment(A, 0, 2, EMBED_ONLY), Segment(A, 2, 2, HEAD_ONLY)), replica=1)


def test_replicas_of_one_entry_split_its_requests() -> None:
    plan = Plan(Epoch(1), "", (PLAN.routes[0], ALONE))
    assert ALONE.key == "A#1" and plan.entries == (A,) and plan.routes_for(A) == plan.routes
    cost = evaluate(plan, cluster(mem_a=1000), PROFILE, WORKLOAD, WEIGHTS)
    assert cost.feasible, cost.reason
    util = dict(cost.per_node_utilization)
    # 0.25 req/s each, 40 tokens: A 2 ms on the ring + 3 ms alone -> 0.05; B 0.5 ms -> 0.005
    # on top of its 0.5 background.
    assert util[A] == pytest.approx(0.05) and util[B] == pytest.approx(0.505)
    # The ring (19 ms) and A alone (3 ms), half the requests each.
    assert cost.mean_latency_s == pytest.approx((0.019 + 0.003) / 2)
    assert cost.latency_s == pytest.approx(0.019)
    same_key = Plan(Epoch(1), "", (PLAN.routes[0], Route(A, ALONE.segments)))
    assert "one key" in evaluate(same_key, cluster(mem_a=1000), PROFILE, WORKLOAD, WEIGHTS).reason


def test_batching_and_load_drive_queueing_and_capacity() -> None:
    fields = {f: getattr(WORKLOAD, f) for f in WORKLOAD.__slots__}
    base = evaluate(PLAN, cluster(), PROFILE, WORKLOAD, WEIGHTS)
    busy = evaluate(PLAN, cluster(), PROFILE, Workload(**{**fields, "requests_per_s": 10.0}),
                    WEIGHTS)
    # 20x the rate: A's own load 0.8, so its 2 ms step waits 8 ms.
    assert dict(busy.per_node_utilization)[A] == pytest.approx(0.8)
    assert busy.queueing_s > 50 * base.queueing_s
    assert busy.queueing_s == pytest.approx(0.002 * 4 + 0.0005 * 0.2 / 0.8)
    assert busy.capacity_rps == pytest.approx(base.capacity_rps)
    # Ten sessions per batched step at a marginal cost of 0.1: each costs 0.19 of a step.
    batched = Workload(**{**fields, "requests_per_s": 10.0, "concurrent_sessions": 10,
                          "batch_marginal_cost": 0.1})
    cost = evaluate(PLAN, cluster(mem_a=10_000, mem_b=10_000), PROFILE, batched, WEIGHTS)
    assert dict(cost.per_node_utilization)[A] == pytest.approx(0.8 * 0.19)
    assert cost.capacity_rps == pytest.approx(busy.capacity_rps / 0.19)
    assert cost.queueing_s < busy.queueing_s
