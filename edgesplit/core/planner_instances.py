"""Model profiles and random heterogeneous clusters for tests and benchmarks.

Everything takes a seeded ``random.Random`` so instances replay exactly.
Speeds are effective decode FLOP/s chosen so that one Llama-2-7B layer takes
about 0.5 ms on an A6000-class node and ten times longer on a Jetson-class one.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from edgesplit.core.types import (
    ClusterState,
    LayerCost,
    LinkState,
    ModelProfile,
    NodeId,
    NodeState,
    Privacy,
    Trust,
    Workload,
)

GB = 1 << 30


def llama_profile(
    name: str,
    num_layers: int,
    hidden: int,
    intermediate: int,
    vocab: int = 32000,
    bytes_per_param: float = 2.0,
    kv_bytes_per_value: int = 2,
) -> ModelProfile:
    """A Llama-shaped profile: 4h^2 attention + 3hi MLP + 2 norms per layer.

    FLOPs per token are 2 per weight; KV is one key and one value vector per
    token per layer; activations travel as float32 (4 * hidden bytes).
    """
    params = 4 * hidden * hidden + 3 * hidden * intermediate + 2 * hidden
    layer = LayerCost(
        weight_bytes=int(params * bytes_per_param),
        flops_per_token=2.0 * params,
        kv_bytes_per_token=2 * hidden * kv_bytes_per_value,
    )
    embed = LayerCost(int(vocab * hidden * bytes_per_param), float(hidden), 0)
    head_params = vocab * hidden + hidden
    head = LayerCost(int(head_params * bytes_per_param), 2.0 * head_params, 0)
    return ModelProfile(
        name=name,
        layers=(layer,) * num_layers,
        embed=embed,
        head=head,
        activation_bytes_per_token=4 * hidden,
        digest=f"synthetic:{name}",
    )


def llama2_7b() -> ModelProfile:
    """Llama-2-7B in fp16: 32 layers of 202.4 M parameters (404.8 MB each)."""
    return llama_profile("llama-2-7b-fp16", 32, 4096, 11008)


def profile_for(num_layers: int) -> ModelProfile:
    """The benchmark's model of a given depth: 7B fp16, 70B int8, or 70B-wide int4."""
    if num_layers <= 32:
        return llama_profile(f"llama-{num_layers}l-fp16", num_layers, 4096, 11008)
    if num_layers <= 80:
        return llama_profile(f"llama-{num_layers}l-int8", num_layers, 8192, 28672, 32000, 1.0)
    return llama_profile(f"llama-{num_layers}l-int4", num_layers, 8192, 28672, 32000, 0.5)


@dataclass(frozen=True, slots=True)
class NodeClass:
    name: str
    memory_gb: float
    flops_per_s: float  # effective decode speed


# One 7B layer (4.05e8 FLOPs) takes ~0.5 ms on an A6000 and ~5 ms on a Jetson.
NODE_CLASSES = (
    NodeClass("a6000", 48, 8.0e11),
    NodeClass("rtx4090", 24, 9.0e11),
    NodeClass("rtx3060", 12, 3.5e11),
    NodeClass("jetson-orin", 32, 8.0e10),
    NodeClass("laptop", 16, 5.0e10),
    NodeClass("mini-pc", 8, 3.0e10),
)


def random_cluster(
    rng: random.Random,
    n: int,
    *,
    trusted_fraction: float = 0.4,
    missing_links: float = 0.05,
    bandwidth_mbps: tuple[float, float] = (1.0, 1000.0),
    rtt_ms: tuple[float, float] = (1.0, 40.0),
) -> ClusterState:
    """``n`` nodes of mixed classes; node ``n0`` is a trusted edge entry.

    Links are symmetric, bandwidth log-uniform in ``bandwidth_mbps``, RTT
    uniform in ``rtt_ms``; a pair lacks a link with probability ``missing_links``.
    """
    nodes = []
    for i in range(n):
        cls = NODE_CLASSES[3 if i == 0 else rng.randrange(len(NODE_CLASSES))]
        nodes.append(
            NodeState(
                node_id=NodeId(f"n{i}"),
                trust=Trust.TRUSTED
                if i == 0 or rng.random() < trusted_fraction
                else Trust.UNTRUSTED,
                memory_bytes=int(cls.memory_gb * GB * rng.uniform(0.5, 1.0)),
                flops_per_s=cls.flops_per_s,
                utilization=round(rng.uniform(0.0, 0.5), 3),
            )
        )
    links = []
    lo, hi = math.log(bandwidth_mbps[0]), math.log(bandwidth_mbps[1])
    for i in range(n):
        for j in range(i + 1, n):
            if rng.random() < missing_links:
                continue
            bw = math.exp(rng.uniform(lo, hi)) * 1e6
            rtt = rng.uniform(*rtt_ms) / 1000.0
            a, b = nodes[i].node_id, nodes[j].node_id
            links.append(LinkState(a, b, rtt, bw))
            links.append(LinkState(b, a, rtt, bw))
    return ClusterState(tuple(nodes), tuple(links))


def random_workload(rng: random.Random) -> Workload:
    return Workload(
        prompt_tokens=rng.choice((32, 128, 512)),
        new_tokens=rng.choice((32, 128)),
        requests_per_s=rng.choice((0.02, 0.05, 0.1)),  # single-stream decode: well below 1
        privacy=Privacy.HIGH if rng.random() < 0.5 else Privacy.LOW,
        privacy_depth=rng.randrange(0, 3),
    )


def small_instance(
    rng: random.Random, max_nodes: int = 6, max_layers: int = 10
) -> tuple[ClusterState, ModelProfile, Workload]:
    """A small, awkward instance for property tests: uneven layers, tight or short
    memory, missing links, untrusted nodes, dead nodes, measured layer times."""
    n, L = rng.randint(2, max_nodes), rng.randint(1, max_layers)
    layers = tuple(
        LayerCost(rng.randint(50, 150), rng.uniform(0.5e9, 2e9), rng.randint(0, 2))
        for _ in range(L)
    )
    profile = ModelProfile(
        name="small",
        layers=layers,
        embed=LayerCost(rng.randint(0, 30), 1e6, 0),
        head=LayerCost(rng.randint(0, 30), rng.uniform(1e8, 1e9), 0),
        activation_bytes_per_token=rng.choice((1000, 16384)),
        digest="small",
    )
    need = sum(c.weight_bytes + 64 * c.kv_bytes_per_token for c in layers)
    nodes = []
    for i in range(n):
        measured: tuple[tuple[int, float], ...] = ()
        if rng.random() < 0.2:
            measured = tuple((j, rng.uniform(1e-4, 5e-3)) for j in range(L) if rng.random() < 0.5)
        nodes.append(
            NodeState(
                node_id=NodeId(f"n{i}"),
                trust=Trust.TRUSTED if i == 0 or rng.random() < 0.5 else Trust.UNTRUSTED,
                memory_bytes=int(need * rng.uniform(0.1, 1.3)) + 100,
                flops_per_s=rng.choice((1e11, 3e11, 1e12)),
                utilization=rng.choice((0.0, 0.3, 0.9, 1.0)),
                alive=i == 0 or rng.random() < 0.9,
                layer_seconds=measured,
            )
        )
    links = []
    for a in nodes:
        for b in nodes:
            if a is not b and rng.random() < 0.85:
                links.append(
                    LinkState(
                        a.node_id, b.node_id, rng.uniform(0.001, 0.03), rng.choice((1e6, 1e8, 1e9))
                    )
                )
    workload = Workload(
        prompt_tokens=rng.choice((1, 16, 64)),
        new_tokens=16,
        requests_per_s=0.05,
        privacy=Privacy.HIGH if rng.random() < 0.5 else Privacy.LOW,
        privacy_depth=rng.randint(0, min(L, 3)),
        kv_budget_tokens=64,
    )
    return ClusterState(tuple(nodes), tuple(links)), profile, workload
