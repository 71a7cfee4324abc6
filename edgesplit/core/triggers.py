"""When to re-plan, and which re-plan to adopt (the seed's Table 3 and Algorithm 1).

``evaluate_triggers`` reads E(t) and the current plan and says whether the
orchestrator should ask the split reviser for a new plan now. ``should_adopt``
and ``decide_revision`` say what to do with the answers. All pure: the
orchestrator passes ``now`` and the time of its last reconfiguration.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Mapping
from dataclasses import dataclass

from edgesplit.core.environment import EnvironmentState
from edgesplit.core.inventory import NodeInventory
from edgesplit.core.trust import rule_of, untrusted_sensitive
from edgesplit.core.types import ClusterState, CostBreakdown, Mode, NodeId, NodeState, Plan, Route


class TriggerKind(enum.Enum):
    LATENCY = "latency"
    UTILIZATION = "utilization"
    BANDWIDTH = "bandwidth"
    PRIVACY = "privacy"
    FAILOVER = "failover"


# These bypass the cool-down: waiting 30 s would mean 30 s of failed requests or
# 30 s of sensitive layers on a node that must not see them.
URGENT: frozenset[TriggerKind] = frozenset({TriggerKind.PRIVACY, TriggerKind.FAILOVER})


@dataclass(frozen=True, slots=True)
class TriggerConfig:
    """Thresholds of Table 3 (docs/architecture.md §6)."""

    latency_ewma_s: float = 0.150  # fire when the end-to-end latency EWMA is above this
    max_utilization: float = 0.85  # ... when any plan node's CPU or GPU is above this
    min_link_bandwidth_bps: float = 50e6  # ... when a link the plan uses is below this
    cooldown_s: float = 30.0  # between reconfigurations, for the non-urgent triggers
    privacy_depth: int = 1  # first layers that must stay on nodes the entry trusts


@dataclass(frozen=True, slots=True)
class Trigger:
    """One fired trigger: its worst ``subject`` (node, ``src->dst`` or ``""``) and figures."""

    kind: TriggerKind
    subject: str
    value: float
    threshold: float
    detail: str

    @property
    def urgent(self) -> bool:
        return self.kind in URGENT


@dataclass(frozen=True, slots=True)
class TriggerDecision:
    """``fired`` lists every trigger whose condition holds, suppressed ones included."""

    fired: tuple[Trigger, ...]
    act: bool  # ask for a new plan now
    reason: str
    suppressed_by_cooldown: bool  # some trigger held back by the cool-down

    @property
    def kinds(self) -> frozenset[TriggerKind]:
        return frozenset(t.kind for t in self.fired)


def route_hops(route: Route) -> tuple[tuple[NodeId, NodeId], ...]:
    """Directed links one request crosses on ``route``, the return to the entry included."""
    ring = (*route.nodes, route.entry)
    return tuple((a, b) for a, b in itertools.pairwise(ring) if a != b)


def plan_links(plan: Plan) -> tuple[tuple[NodeId, NodeId], ...]:
    """Every directed link any route of ``plan`` uses, once each, in route order."""
    return tuple(dict.fromkeys(hop for r in plan.routes for hop in route_hops(r)))


def untrusted_sensitive_nodes(
    route: Route, nodes: Mapping[NodeId, NodeState], privacy_depth: int
) -> tuple[NodeId, ...]:
    """Nodes of ``route`` that hold embed, head or a layer below ``privacy_depth``
    without being trusted by the route's entry (unknown nodes count as untrusted).

    The entry itself is skipped: the client chose it and it already holds the
    raw input, so no plan can do better there.
    """
    bad = untrusted_sensitive(route, privacy_depth, rule_of(nodes))
    return tuple(n for n in bad if n != route.entry)


def evaluate_triggers(
    env: EnvironmentState,
    plan: Plan | None,
    cluster: ClusterState | NodeInventory,
    last_reconfig_at: float | None,
    now: float,
    config: TriggerConfig | None = None,
    *,
    pending_privacy_high: Mapping[NodeId, int] | int = 0,
    privacy_violation: bool = False,
) -> TriggerDecision:
    """ShouldReconfigure(E(t), plan) of Algorithm 1.

    ``cluster`` supplies trust: the inventory (cheap, every cycle) or a
    ``ClusterState`` (what ``env.to_cluster_state`` gave the planner).
    ``pending_privacy_high`` counts waiting ``privacy=high`` requests per entry
    node (an int: at any entry); ``privacy_violation`` lets a caller that has
    already found one say so. Without a plan only the latency trigger applies.
    """
    cfg = config or TriggerConfig()
    fired: list[Trigger] = []
    latency = env.latency_ewma_s
    if latency is not None and latency > cfg.latency_ewma_s:
        fired.append(_trig(TriggerKind.LATENCY, "", latency, cfg.latency_ewma_s, "latency EWMA"))
    if plan is not None:
        plan_nodes = sorted(plan.nodes)
        dead = [n for n in plan_nodes if not env.is_alive(n)]
        if dead:
            fired.append(
                Trigger(
                    TriggerKind.FAILOVER,
                    ",".join(dead),
                    float(len(dead)),
                    0.0,
                    f"plan node(s) dead: {', '.join(dead)}",
                )
            )
        fired.extend(_utilization(env, plan_nodes, cfg))
        fired.extend(_bandwidth(env, plan, cfg))
        fired.extend(_privacy(plan, cluster, cfg, pending_privacy_high))
    if privacy_violation and not any(t.kind is TriggerKind.PRIVACY for t in fired):
        fired.append(Trigger(TriggerKind.PRIVACY, "", 1.0, 0.0, "privacy violation reported"))
    return _decide(tuple(fired), last_reconfig_at, now, cfg)


def _trig(kind: TriggerKind, subject: str, value: float, threshold: float, what: str) -> Trigger:
    return Trigger(kind, subject, value, threshold, f"{what} {value:.4g} beyond {threshold:.4g}")


def _utilization(
    env: EnvironmentState, plan_nodes: list[NodeId], cfg: TriggerConfig
) -> list[Trigger]:
    # Plan nodes only: a busy node outside the plan carries none of our load,
    # so no reconfiguration can relieve it. Dead or silent nodes have no figure.
    worst: tuple[float, NodeId] | None = None
    for node_id in plan_nodes:
        node = env.nodes.get(node_id)
        if node is None or not node.alive or node.reports == 0:
            continue
        u = node.peak_utilization
        if worst is None or u > worst[0]:
            worst = (u, node_id)
    if worst is None or worst[0] <= cfg.max_utilization:
        return []
    return [
        _trig(
            TriggerKind.UTILIZATION,
            worst[1],
            worst[0],
            cfg.max_utilization,
            f"utilisation of {worst[1]}",
        )
    ]


def _bandwidth(env: EnvironmentState, plan: Plan, cfg: TriggerConfig) -> list[Trigger]:
    worst: tuple[float, str] | None = None
    for src, dst in plan_links(plan):
        link = env.link(src, dst)
        # A link with a dead end is failover's business; an unmeasured one proves nothing.
        if (
            link is None
            or link.bandwidth_bps is None
            or not (env.is_alive(src) and env.is_alive(dst))
        ):
            continue
        if worst is None or link.bandwidth_bps < worst[0]:
            worst = (link.bandwidth_bps, f"{src}->{dst}")
    if worst is None or worst[0] >= cfg.min_link_bandwidth_bps:
        return []
    return [
        _trig(
            TriggerKind.BANDWIDTH,
            worst[1],
            worst[0],
            cfg.min_link_bandwidth_bps,
            f"bandwidth of {worst[1]} (bit/s)",
        )
    ]


def _privacy(
    plan: Plan,
    cluster: ClusterState | NodeInventory,
    cfg: TriggerConfig,
    pending: Mapping[NodeId, int] | int,
) -> list[Trigger]:
    if isinstance(pending, int):
        routes = plan.routes if pending > 0 else ()
    else:
        routes = tuple(r for r in plan.routes if pending.get(r.entry, 0) > 0)
    if not routes:
        return []
    nodes: Mapping[NodeId, NodeState] = (
        cluster.index
        if isinstance(cluster, NodeInventory)
        else {n.node_id: n for n in cluster.nodes}
    )
    for route in routes:
        bad = untrusted_sensitive_nodes(route, nodes, cfg.privacy_depth)
        if bad:
            return [
                Trigger(
                    TriggerKind.PRIVACY,
                    route.entry,
                    float(len(bad)),
                    0.0,
                    f"privacy=high request at {route.entry} would cross untrusted {', '.join(bad)}",
                )
            ]
    return []


def _decide(
    fired: tuple[Trigger, ...], last_reconfig_at: float | None, now: float, cfg: TriggerConfig
) -> TriggerDecision:
    if not fired:
        return TriggerDecision((), False, "no trigger fired", False)
    cooling = last_reconfig_at is not None and now - last_reconfig_at < cfg.cooldown_s
    acting = [t for t in fired if t.urgent or not cooling]
    held = [t for t in fired if cooling and not t.urgent]
    parts = [t.kind.value + ": " + t.detail for t in acting]
    if held:
        assert last_reconfig_at is not None  # held implies cooling
        left = cfg.cooldown_s - (now - last_reconfig_at)
        parts.append(
            f"cool-down ({left:.1f} s left) holds " + ", ".join(t.kind.value for t in held)
        )
    return TriggerDecision(fired, bool(acting), "; ".join(parts), bool(held))


# -- adopting a new plan ----------------------------------------------------


def should_adopt(current: CostBreakdown | None, new: CostBreakdown | None, margin: float) -> bool:
    """Hysteresis: adopt ``new`` only if it beats ``current`` by ``margin`` (a fraction).

    An infeasible ``new`` is never adopted; a feasible one always replaces an
    infeasible (or missing) current plan, whatever the totals say.
    """
    if new is None or not new.feasible:
        return False
    if current is None or not current.feasible:
        return True
    return new.total < current.total * (1.0 - margin)


@dataclass(frozen=True, slots=True)
class RevisionDecision:
    """Next step of Algorithm 1 once placement (and maybe re-split) results are in."""

    adopt: Mode | None  # which result to adopt; None: keep the current plan (for now)
    try_resplit: bool  # ask the reviser for a full re-split before deciding
    reason: str


def decide_revision(
    current: CostBreakdown | None,
    placement: CostBreakdown | None,
    resplit: CostBreakdown | None = None,
    margin: float = 0.05,
) -> RevisionDecision:
    """Placement first; a re-split when placement is infeasible or not better
    enough, or when the re-split beats the placement itself by the margin.

    The last clause extends the seed's Algorithm 1: a placement keeps cuts
    made for conditions that may be gone, so it can beat the current plan and
    still be far from a fresh split (smart-city: after the cloud's overload
    the placement moved the cloud's segment to the edge and gave the cloud the
    edge's two layers, at twice the re-split's latency, and the re-split came
    one reconfiguration later). Call with ``resplit=None`` after the placement
    answer: the result asks for a re-split (``try_resplit``) unless placement
    is ruled out already. Call again with both answers to decide.
    """
    if should_adopt(current, placement, margin):
        if resplit is None:
            return RevisionDecision(None, True, "placement beats current plan by the margin: "
                                    "weigh a re-split too")
        if should_adopt(placement, resplit, margin):
            return RevisionDecision(Mode.RESPLIT, False, "placement beats current plan by the "
                                    "margin; re-split beats placement by the margin")
        return RevisionDecision(Mode.PLACEMENT, False, "placement beats current plan by the margin")
    why = (
        "placement infeasible"
        if placement is None or not placement.feasible
        else ("placement not better by the margin")
    )
    if resplit is None:
        return RevisionDecision(None, True, why + ": try re-split")
    if should_adopt(current, resplit, margin):
        return RevisionDecision(Mode.RESPLIT, False, why + "; re-split beats current plan")
    return RevisionDecision(
        None,
        False,
        why
        + "; re-split "
        + ("infeasible" if not resplit.feasible else "not better by the margin")
        + ": keep current plan",
    )
