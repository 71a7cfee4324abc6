"""The cost model of a plan (docs/architecture.md §6; the paper's equation 3).

Every number the planner, the MILP, the baselines and ``evaluate`` use comes
from the few primitives below, so the four cannot disagree about a formula.

Formulas (seconds, bytes, bits per second):

* compute time of decoder layer ``i`` on node ``n`` for one token::

      t(n, i) = n.layer_seconds[i]                              if measured
              = flops_i / (n.flops_per_s * max(1 - n.utilization, MIN_FREE_FRACTION))

  ``embed`` and ``head`` use the keys ``Part.EMBED`` and ``Part.HEAD`` in
  ``layer_seconds``. The floor keeps a saturated node finite (20x
  slower at the default 0.05) so it stays comparable instead of vanishing.
* one hop ``a -> b`` carrying ``k`` tokens of activations::

      hop(a, b, k) = rtt_ab / 2 + k * activation_bytes_per_token * 8 / bandwidth_ab

  A frame crosses each link of the ring once, one way, without waiting for a
  reply, so a hop pays half the measured round trip (links are assumed
  symmetric in delay). A node handing to itself pays nothing.
* decode step of a route (one token): embed and head on the entry, every layer
  on its node, every hop of the ring including the return to the entry.
* time to first token: the same ring with ``prompt_tokens`` tokens per hop and
  ``prompt_tokens`` times the per-token compute (a linear prefill model; real
  prefill batches better, so this is an upper estimate).
* a node's added utilisation: busy seconds per second =
  ``requests_per_s / routes * (prompt_tokens + new_tokens) * per-token compute
  * batch_factor`` (each route carries an equal share of the requests; an
  entry with several routes — replicas — splits its share among them).
  ``batch_factor = (1 + (b - 1) * batch_marginal_cost) / b`` with
  ``b = max(1, concurrent_sessions / routes)`` sessions per batched step:
  1 without batching gains, less when a node's step serves several sessions.
* queueing, the larger of two views of the same load:

  - open (requests arrive at a rate): a node whose own load (the plan's, not
    background: background already slows its compute) is ``rho`` makes each
    step wait ``its step time * rho / (1 - rho)`` (M/M/1), with ``rho``
    capped at ``MAX_RHO`` so a saturated plan stays comparable; summed
    along the route;
  - closed (``concurrent_sessions`` always stepping, split evenly over the
    routes): a step cannot take less than the busiest node of its route
    needs for every session there, ``sum over routes of sessions * step on
    that node * batch_factor`` (the asymptotic bound of a closed queueing
    network), so the wait is that minus the route's own step, when positive.

  ``queueing_s`` averages it over routes. ``capacity_rps`` is the request
  rate at which the busiest node reaches ``rho = 1``.
* memory of a node: the weights it holds (a layer held for two routes counts
  once) plus, for every route and layer it runs, the KV budget
  ``kv_bytes_per_token * kv_budget_tokens * concurrent_sessions``.
* privacy penalty: the sensitive items (``embed``, layers ``[0, privacy_depth)``,
  ``head``) of each route that sit on nodes its entry does not trust. For
  ``Privacy.HIGH`` any such item makes the plan infeasible.

The total is ``alpha * mean_latency_s + delta * queueing_s + beta *
imbalance + gamma * privacy_penalty`` (``delta`` 0 by default: the seed's
objective; the planner's replica step weighs queueing itself), where ``mean_latency_s`` averages the routes' decode steps
(each route serves an equal share of requests; one route: its own latency) and
``imbalance`` is the spread (max - min) of utilisation over alive nodes, each
clipped to 1 (saturated), so the term stays within ``beta``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable

from edgesplit.core.route import route_error
from edgesplit.core.trust import trusts
from edgesplit.core.types import (
    ClusterState,
    CostBreakdown,
    LayerCost,
    LayerKey,
    LinkState,
    ModelProfile,
    NodeId,
    NodeState,
    Part,
    Plan,
    Privacy,
    Route,
    Weights,
    Workload,
)

MIN_FREE_FRACTION = 0.05
MAX_RHO = 0.95  # own-load utilisation at which queueing stops growing (20x a step)

INF = math.inf


def free_share(utilization: float) -> float:
    """The share of a node our segments get beside ``utilization`` of other
    load, floored at ``MIN_FREE_FRACTION``."""
    return max(1.0 - utilization, MIN_FREE_FRACTION)


def layer_times(node: NodeState, profile: ModelProfile) -> tuple[list[float], float, float]:
    """(per decoder layer, embed, head) seconds per token on ``node``."""
    measured = dict(node.layer_seconds)
    speed = node.flops_per_s * free_share(node.utilization)

    def one(cost: LayerCost, key: LayerKey) -> float:
        if key in measured:
            return measured[key]
        if cost.flops_per_token <= 0:
            return 0.0
        return cost.flops_per_token / speed if speed > 0 else INF

    layers = [one(c, i) for i, c in enumerate(profile.layers)]
    return layers, one(profile.embed, Part.EMBED), one(profile.head, Part.HEAD)


def hop_seconds(link: LinkState | None, tokens: int, activation_bytes: int) -> float:
    """One-way transfer of ``tokens`` hidden vectors over ``link`` (inf if there is none)."""
    if link is None or link.bandwidth_bps <= 0:
        return INF
    return link.rtt_s / 2.0 + tokens * activation_bytes * 8.0 / link.bandwidth_bps


def kv_bytes(cost: LayerCost, workload: Workload) -> int:
    """KV cache one route reserves for one layer on the node that runs it."""
    return cost.kv_bytes_per_token * workload.kv_budget_tokens * workload.concurrent_sessions


def batch_factor(workload: Workload, num_routes: int) -> float:
    """Per-session share of a batched step (1: no batching gain; module doc)."""
    b = max(1.0, workload.concurrent_sessions / max(num_routes, 1))
    return (1.0 + (b - 1.0) * workload.batch_marginal_cost) / b


def load_per_second(workload: Workload, num_routes: int) -> float:
    """Utilisation one second of per-token compute adds on a node, per route."""
    tokens = workload.prompt_tokens + workload.new_tokens
    return workload.requests_per_s / max(num_routes, 1) * tokens * batch_factor(
        workload, num_routes)


def queue_wait(step_s: float, rho: float) -> float:
    """M/M/1 waiting before a step of ``step_s`` at a node of own load ``rho``."""
    rho = min(max(rho, 0.0), MAX_RHO)
    return step_s * rho / (1.0 - rho)


def sensitive_depth(profile: ModelProfile, workload: Workload) -> int:
    """Number of leading decoder layers that are privacy-sensitive."""
    return max(0, min(workload.privacy_depth, profile.num_layers))


def infeasible(reason: str) -> CostBreakdown:
    return CostBreakdown(
        total=INF,
        latency_s=INF,
        ttft_s=INF,
        bottleneck_s=INF,
        imbalance=INF,
        privacy_penalty=INF,
        feasible=False,
        reason=reason,
        mean_latency_s=INF,
        queueing_s=INF,
        capacity_rps=0.0,
    )


def route_unrunnable(route: Route, state: ClusterState, num_layers: int) -> str:
    """Why ``route`` cannot run under ``state``, or "" if it can: it must have
    the one route shape (``core.route.check_route``), every node must be known
    and alive and each hop between different nodes must have a link."""
    entry = route.entry
    alive = {n.node_id for n in state.nodes if n.alive}
    known = {n.node_id for n in state.nodes}
    for s in route.segments:
        if s.node not in known:
            return f"route of {entry} uses unknown node {s.node}"
        if s.node not in alive:
            return f"route of {entry} uses dead node {s.node}"
    why = route_error(route, num_layers)
    if why:
        return why
    for a, b in zip(route.nodes, route.nodes[1:], strict=False):
        if a != b and state.link(a, b) is None:
            return f"route of {entry} hops {a} -> {b} without a link"
    return ""


def memory_use(
    routes: Iterable[Route], profile: ModelProfile, workload: Workload
) -> dict[NodeId, int]:
    """Bytes each node needs for ``routes`` (shared weights once, KV per route)."""
    held: dict[NodeId, set[LayerKey]] = defaultdict(set)
    kv: dict[NodeId, int] = defaultdict(int)
    for r in routes:
        for s in r.segments:
            for key in s.keys:
                held[s.node].add(key)
                kv[s.node] += kv_bytes(layer_cost(profile, key), workload)
    return {n: sum(layer_cost(profile, k).weight_bytes for k in keys) + kv[n]
            for n, keys in held.items()}


def layer_cost(profile: ModelProfile, key: LayerKey) -> LayerCost:
    """The profile's cost of one decoder layer or named part."""
    if key is Part.EMBED:
        return profile.embed
    if key is Part.HEAD:
        return profile.head
    assert isinstance(key, int)
    return profile.layers[key]


def evaluate(
    plan: Plan,
    state: ClusterState,
    profile: ModelProfile,
    workload: Workload,
    weights: Weights,
) -> CostBreakdown:
    """Cost of ``plan`` under ``state``; infeasible (with a reason) if it cannot run."""
    if not plan.routes:
        return infeasible("plan has no routes")
    if plan.model_digest and profile.digest and plan.model_digest != profile.digest:
        return infeasible(f"plan is for model {plan.model_digest}, profile is {profile.digest}")
    keys = [r.key for r in plan.routes]
    if len(set(keys)) != len(keys):
        return infeasible("plan has two routes with one key (entry and replica)")
    L = profile.num_layers
    for r in plan.routes:
        why = route_unrunnable(r, state, L)
        if why:
            return infeasible(why)
    nodes = {n.node_id: n for n in state.nodes}
    for node_id, need in sorted(memory_use(plan.routes, profile, workload).items()):
        if need > nodes[node_id].memory_bytes:
            return infeasible(
                f"node {node_id} needs {need} bytes, has {nodes[node_id].memory_bytes}"
            )
    times = {nid: layer_times(nodes[nid], profile) for nid in plan.nodes}
    depth = sensitive_depth(profile, workload)
    # Each entry an equal share of the requests, split evenly over its replicas;
    # with one route per entry every route has 1 / routes, as the planner assumes.
    replicas = {e: len(plan.routes_for(e)) for e in plan.entries}
    shares = [1.0 / len(replicas) / replicas[r.entry] for r in plan.routes]
    per_route_load = load_per_second(workload, len(plan.routes)) * len(plan.routes)
    busy: dict[NodeId, float] = defaultdict(float)  # seconds per token, all routes
    link_busy: dict[tuple[NodeId, NodeId], float] = defaultdict(float)
    added: dict[NodeId, float] = defaultdict(float)
    steps: list[dict[NodeId, float]] = []
    latencies: list[float] = []
    ttfts: list[float] = []
    penalty = 0
    for r, share in zip(plan.routes, shares, strict=True):
        compute = 0.0
        per_node: dict[NodeId, float] = defaultdict(float)
        for s in r.segments:
            layer_s, embed_s, head_s = times[s.node]
            seconds = sum(layer_s[s.start : s.end])
            seconds += (embed_s if s.has_embed else 0.0) + (head_s if s.has_head else 0.0)
            per_node[s.node] += seconds
            compute += seconds
            if not trusts(nodes[s.node], r.entry):
                penalty += s.sensitive_items(depth)
        hops = [(a, b) for a, b in zip(r.nodes, r.nodes[1:], strict=False) if a != b]
        act = profile.activation_bytes_per_token
        one = sum(hop_seconds(state.link(a, b), 1, act) for a, b in hops)
        prompt = sum(hop_seconds(state.link(a, b), workload.prompt_tokens, act) for a, b in hops)
        latencies.append(compute + one)
        ttfts.append(workload.prompt_tokens * compute + prompt)
        steps.append(per_node)
        for nid, seconds in per_node.items():
            busy[nid] += seconds
            added[nid] += share * per_route_load * seconds
        for a, b in hops:
            link = state.link(a, b)
            assert link is not None  # route_unrunnable guarantees it
            link_busy[(a, b)] += act * 8.0 / link.bandwidth_bps
    if penalty and workload.privacy is Privacy.HIGH:
        return infeasible(f"privacy=high: {penalty} sensitive items on untrusted nodes")
    util = tuple(
        (n.node_id, n.utilization + added.get(n.node_id, 0.0)) for n in state.nodes if n.alive
    )
    # Spread of utilisation clipped to [0, 1]: a node past 1 is saturated, and
    # unclipped estimates (prefill counted per token) would let beta * spread
    # outweigh the latency term the objective is about.
    values = [min(u, 1.0) for _, u in util]
    imbalance = max(values) - min(values)
    mean_latency = sum(w * lat for w, lat in zip(shares, latencies, strict=True))
    # Closed view: every route's sessions pass each node once per step.
    sessions = workload.concurrent_sessions * batch_factor(workload, len(plan.routes))
    demand: dict[NodeId, float] = defaultdict(float)
    for share, per_node in zip(shares, steps, strict=True):
        for nid, sec in per_node.items():
            demand[nid] += share * sessions * sec
    queueing = sum(
        w * max(sum(queue_wait(sec, added[nid]) for nid, sec in per_node.items()),
                max(demand[nid] for nid in per_node) - lat)
        for w, per_node, lat in zip(shares, steps, latencies, strict=True))
    peak = max(added.values(), default=0.0)
    capacity = workload.requests_per_s / peak if peak > 0 else INF
    bottleneck = max([*busy.values(), *link_busy.values()])
    total = (weights.alpha * mean_latency + weights.delta * queueing
             + weights.beta * imbalance + weights.gamma * penalty)
    return CostBreakdown(
        total=total,
        latency_s=max(latencies),
        ttft_s=max(ttfts),
        bottleneck_s=bottleneck,
        imbalance=imbalance,
        privacy_penalty=float(penalty),
        per_node_utilization=util,
        mean_latency_s=mean_latency,
        queueing_s=queueing,
        capacity_rps=capacity,
    )


def objective(cost: CostBreakdown, weights: Weights) -> float:
    """The part of the total the planner minimises exactly: latency and privacy terms."""
    return weights.alpha * cost.mean_latency_s + weights.gamma * cost.privacy_penalty
