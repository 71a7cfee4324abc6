"""The cost model of a plan (DESIGN.md 4; the paper's equation 3).

Every number the planner, the MILP, the baselines and ``evaluate`` use comes
from the few primitives below, so the four cannot disagree about a formula.

Formulas (seconds, bytes, bits per second):

* compute time of decoder layer ``i`` on node ``n`` for one token::

      t(n, i) = n.layer_seconds[i]                              if measured
              = flops_i / (n.flops_per_s * max(1 - n.utilization, MIN_FREE_FRACTION))

  ``embed`` and ``head`` use the keys ``EMBED_INDEX`` (-1) and ``HEAD_INDEX``
  (-2) in ``layer_seconds``. The floor keeps a saturated node finite (20x
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
  ``requests_per_s / routes * (prompt_tokens + new_tokens) * per-token compute``
  (each route carries an equal share of the requests).
* memory of a node: the weights it holds (a layer held for two routes counts
  once) plus, for every route and layer it runs, the KV budget
  ``kv_bytes_per_token * kv_budget_tokens * concurrent_sessions``.
* privacy penalty: the sensitive items (``embed``, layers ``[0, privacy_depth)``,
  ``head``) of each route that sit on nodes its entry does not trust. For
  ``Privacy.HIGH`` any such item makes the plan infeasible.

The total is ``alpha * mean_latency_s + beta * imbalance + gamma *
privacy_penalty``, where ``mean_latency_s`` averages the routes' decode steps
(each route serves an equal share of requests; one route: its own latency) and
``imbalance`` is the spread (max - min) of utilisation over alive nodes, each
clipped to 1 (saturated), so the term stays within ``beta``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable

from edgesplit.core.types import (
    ClusterState,
    CostBreakdown,
    LayerCost,
    LinkState,
    ModelProfile,
    NodeId,
    NodeState,
    Plan,
    Privacy,
    Route,
    Weights,
    Workload,
)

MIN_FREE_FRACTION = 0.05
EMBED_INDEX = -1
HEAD_INDEX = -2

INF = math.inf


def layer_times(node: NodeState, profile: ModelProfile) -> tuple[list[float], float, float]:
    """(per decoder layer, embed, head) seconds per token on ``node``."""
    measured = dict(node.layer_seconds)
    free = max(1.0 - node.utilization, MIN_FREE_FRACTION)
    speed = node.flops_per_s * free

    def one(cost: LayerCost, index: int) -> float:
        if index in measured:
            return measured[index]
        if cost.flops_per_token <= 0:
            return 0.0
        return cost.flops_per_token / speed if speed > 0 else INF

    layers = [one(c, i) for i, c in enumerate(profile.layers)]
    return layers, one(profile.embed, EMBED_INDEX), one(profile.head, HEAD_INDEX)


def hop_seconds(link: LinkState | None, tokens: int, activation_bytes: int) -> float:
    """One-way transfer of ``tokens`` hidden vectors over ``link`` (inf if there is none)."""
    if link is None or link.bandwidth_bps <= 0:
        return INF
    return link.rtt_s / 2.0 + tokens * activation_bytes * 8.0 / link.bandwidth_bps


def kv_bytes(cost: LayerCost, workload: Workload) -> int:
    """KV cache one route reserves for one layer on the node that runs it."""
    return cost.kv_bytes_per_token * workload.kv_budget_tokens * workload.concurrent_sessions


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
    )


def check_route(route: Route, state: ClusterState, num_layers: int) -> str:
    """Why ``route`` is structurally invalid under ``state``, or "" if it is valid.

    Valid: the first segment is on the entry and carries ``embed``; the last is
    on the entry and carries ``head`` (nothing else does); layers ``[0, L)`` are
    covered once, in order; a non-entry node holds at most one segment; every
    node is alive and each hop between different nodes has a link.
    """
    segs = route.segments
    entry = route.entry
    if not segs:
        return f"route of {entry} has no segments"
    alive = {n.node_id for n in state.nodes if n.alive}
    known = {n.node_id for n in state.nodes}
    for s in segs:
        if s.node not in known:
            return f"route of {entry} uses unknown node {s.node}"
        if s.node not in alive:
            return f"route of {entry} uses dead node {s.node}"
    if segs[0].node != entry or not segs[0].has_embed:
        return f"route of {entry} must start on its entry with embed"
    if segs[-1].node != entry or not segs[-1].has_head:
        return f"route of {entry} must end on its entry with head"
    if any(s.has_embed for s in segs[1:]) or any(s.has_head for s in segs[:-1]):
        return f"route of {entry} carries embed or head on the wrong segment"
    pos = 0
    for s in segs:
        if s.start != pos:
            return f"route of {entry}: segment on {s.node} starts at {s.start}, expected {pos}"
        pos = s.end
    if pos != num_layers:
        return f"route of {entry} covers layers [0, {pos}) of {num_layers}"
    seen: set[NodeId] = set()
    for k, s in enumerate(segs):
        if s.node == entry:
            if 0 < k < len(segs) - 1:
                return f"route of {entry} visits its entry in the middle"
            continue
        if s.num_layers == 0:
            return f"route of {entry} has an empty segment on {s.node}"
        if s.node in seen:
            return f"route of {entry} visits {s.node} twice"
        seen.add(s.node)
    for a, b in zip(route.nodes, route.nodes[1:], strict=False):
        if a != b and state.link(a, b) is None:
            return f"route of {entry} hops {a} -> {b} without a link"
    return ""


def memory_use(
    routes: Iterable[Route], profile: ModelProfile, workload: Workload
) -> dict[NodeId, int]:
    """Bytes each node needs for ``routes`` (shared weights once, KV per route)."""
    held: dict[NodeId, set[int]] = defaultdict(set)
    kv: dict[NodeId, int] = defaultdict(int)
    for r in routes:
        for s in r.segments:
            if s.has_embed:
                held[s.node].add(EMBED_INDEX)
                kv[s.node] += kv_bytes(profile.embed, workload)
            if s.has_head:
                held[s.node].add(HEAD_INDEX)
                kv[s.node] += kv_bytes(profile.head, workload)
            for i in range(s.start, s.end):
                held[s.node].add(i)
                kv[s.node] += kv_bytes(profile.layers[i], workload)

    def weight(i: int) -> int:
        if i == EMBED_INDEX:
            return profile.embed.weight_bytes
        if i == HEAD_INDEX:
            return profile.head.weight_bytes
        return profile.layers[i].weight_bytes

    return {n: sum(weight(i) for i in idx) + kv[n] for n, idx in held.items()}


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
    entries = [r.entry for r in plan.routes]
    if len(set(entries)) != len(entries):
        return infeasible("plan has two routes for one entry")
    L = profile.num_layers
    for r in plan.routes:
        why = check_route(r, state, L)
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
    share = workload.requests_per_s / len(plan.routes)
    tokens_per_request = workload.prompt_tokens + workload.new_tokens
    busy: dict[NodeId, float] = defaultdict(float)  # seconds per token, all routes
    link_busy: dict[tuple[NodeId, NodeId], float] = defaultdict(float)
    added: dict[NodeId, float] = defaultdict(float)
    latencies: list[float] = []
    ttfts: list[float] = []
    penalty = 0
    for r in plan.routes:
        compute = 0.0
        per_node: dict[NodeId, float] = defaultdict(float)
        for s in r.segments:
            layer_s, embed_s, head_s = times[s.node]
            seconds = sum(layer_s[s.start : s.end])
            seconds += (embed_s if s.has_embed else 0.0) + (head_s if s.has_head else 0.0)
            per_node[s.node] += seconds
            compute += seconds
            if not nodes[s.node].trusts_entry(r.entry):
                sensitive = max(0, min(s.end, depth) - s.start)
                penalty += sensitive + int(s.has_embed) + int(s.has_head)
        hops = [(a, b) for a, b in zip(r.nodes, r.nodes[1:], strict=False) if a != b]
        act = profile.activation_bytes_per_token
        one = sum(hop_seconds(state.link(a, b), 1, act) for a, b in hops)
        prompt = sum(hop_seconds(state.link(a, b), workload.prompt_tokens, act) for a, b in hops)
        latencies.append(compute + one)
        ttfts.append(workload.prompt_tokens * compute + prompt)
        for nid, seconds in per_node.items():
            busy[nid] += seconds
            added[nid] += share * tokens_per_request * seconds
        for a, b in hops:
            link = state.link(a, b)
            assert link is not None  # check_route guarantees it
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
    mean_latency = sum(latencies) / len(latencies)
    bottleneck = max([*busy.values(), *link_busy.values()])
    total = weights.alpha * mean_latency + weights.beta * imbalance + weights.gamma * penalty
    return CostBreakdown(
        total=total,
        latency_s=max(latencies),
        ttft_s=max(ttfts),
        bottleneck_s=bottleneck,
        imbalance=imbalance,
        privacy_penalty=float(penalty),
        per_node_utilization=util,
        mean_latency_s=mean_latency,
    )


def objective(cost: CostBreakdown, weights: Weights) -> float:
    """The part of the total the planner minimises exactly: latency and privacy terms."""
    return weights.alpha * cost.mean_latency_s + weights.gamma * cost.privacy_penalty
