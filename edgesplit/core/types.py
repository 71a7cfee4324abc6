"""Domain values shared by the planner, the monitor reducer and the services.

Everything here is a frozen, slotted dataclass over plain values so that the
planner and the simulator can be unit-tested without grpc or torch, and so that
the same inputs always give the same outputs (docs/architecture.md §10.2-3).

Units are base units throughout: seconds, bytes, bits per second, FLOPs.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import NewType

NodeId = NewType("NodeId", str)
Epoch = NewType("Epoch", int)
REPLICA_MARK = "#"  # route key of replica r > 0: f"{entry}#{r}" (node ids never hold it)


class Trust(enum.IntEnum):
    """How much a node is trusted with privacy-sensitive layers.

    ``TRUSTED`` nodes may hold ``embed``, the first ``privacy_depth`` layers
    and ``head`` for routes whose entry trusts them; ``UNTRUSTED`` never may.
    """

    UNTRUSTED = 0
    TRUSTED = 1


class Privacy(enum.IntEnum):
    """A request's privacy level (docs/architecture.md §5.5, §6)."""

    LOW = 0  # sensitive layers may go anywhere (penalised in the objective)
    HIGH = 1  # sensitive layers must sit on nodes the entry trusts (hard)


class Part(enum.Enum):
    """A named part of the model besides the numbered decoder layers.

    ``EMBED`` turns token ids into hidden states, ``HEAD`` is final norm +
    lm_head + sampling; both see raw tokens, so both stay on the entry's
    trusted side. As a layer key (``LayerKey``) a part orders where it runs:
    ``EMBED`` before layer 0, ``HEAD`` after the last layer, so tables keyed by
    ``int | Part`` sort in execution order.
    """

    EMBED = "embed"
    HEAD = "head"

    @property
    def position(self) -> float:
        return -1.0 if self is Part.EMBED else math.inf

    def __lt__(self, other: object) -> bool:
        return self.position < _position(other)

    def __le__(self, other: object) -> bool:
        return self.position <= _position(other)

    def __gt__(self, other: object) -> bool:
        return self.position > _position(other)

    def __ge__(self, other: object) -> bool:
        return self.position >= _position(other)


# A key of a per-layer table: a decoder layer index (0..L-1) or a named part.
LayerKey = int | Part


def _position(key: object) -> float:
    if isinstance(key, Part):
        return key.position
    if isinstance(key, int) and not isinstance(key, bool):
        return float(key)
    raise TypeError(f"not a layer key: {key!r}")


def is_layer_key(key: object) -> bool:
    """A decoder layer index >= 0 or a ``Part``."""
    return isinstance(key, Part) or (isinstance(key, int) and not isinstance(key, bool)
                                     and key >= 0)


def parse_layer_key(raw: str | int) -> LayerKey:
    """``"embed"`` / ``"head"`` or a layer index (``"3"`` or ``3``); ValueError otherwise."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        key: LayerKey = raw
    else:
        text = str(raw).strip().lower()
        key = Part(text) if text in PART_NAMES else int(text)
    if not is_layer_key(key):
        raise ValueError(f"bad layer {raw!r}")
    return key


def format_layer_key(key: LayerKey) -> str:
    """The inverse of ``parse_layer_key``: ``"embed"``, ``"3"``, ``"head"``."""
    return key.value if isinstance(key, Part) else str(key)


def shard_name(key: LayerKey) -> str:
    """The shard manifest's name for a layer key: ``"embed"``, ``"layer.3"``, ``"head"``."""
    return key.value if isinstance(key, Part) else f"layer.{key}"


PART_NAMES = frozenset(p.value for p in Part)
EMBED_ONLY = frozenset({Part.EMBED})
HEAD_ONLY = frozenset({Part.HEAD})


class Mode(enum.IntEnum):
    """What the planner may change."""

    PLACEMENT = 0  # keep the cut points, move segments to other nodes
    RESPLIT = 1  # cut points and placement both free


@dataclass(frozen=True, slots=True)
class LayerCost:
    """Cost of one pseudo-layer or decoder layer of the model.

    ``flops_per_token`` drives the estimate on a node of known speed; a measured
    per-node time (``NodeState.layer_seconds``) replaces it when the monitor has one.
    """

    weight_bytes: int
    flops_per_token: float
    kv_bytes_per_token: int = 0


@dataclass(frozen=True, slots=True)
class ModelProfile:
    """What the planner knows about a model without loading it.

    ``layers`` are the decoder blocks in order; ``embed`` and ``head`` are the
    pseudo-layers that always stay on the entry's trusted side.
    """

    name: str
    layers: tuple[LayerCost, ...]
    embed: LayerCost
    head: LayerCost
    activation_bytes_per_token: int  # one hidden vector on the wire (float32 = 4 * hidden)
    digest: str = ""

    @property
    def num_layers(self) -> int:
        return len(self.layers)


@dataclass(frozen=True, slots=True)
class NodeState:
    """One node as the planner sees it.

    ``flops_per_s`` is the node's effective speed; ``layer_seconds`` (if given)
    holds measured per-token decode time per layer key (index, ``Part.EMBED``,
    ``Part.HEAD``) on this node and wins over the FLOPs estimate. ``trusted_by``
    lists entry nodes that trust this node with sensitive layers (empty: any
    entry); ``edgesplit.core.trust.trusts`` is the rule that reads both.
    """

    node_id: NodeId
    trust: Trust
    memory_bytes: int  # available for weights + KV cache
    flops_per_s: float
    utilization: float = 0.0  # 0..1, background load not caused by our plan
    alive: bool = True
    layer_seconds: tuple[tuple[LayerKey, float], ...] = ()
    trusted_by: tuple[NodeId, ...] = ()
    address: str = ""



@dataclass(frozen=True, slots=True)
class LinkState:
    """A directed link ``src -> dst`` between two nodes."""

    src: NodeId
    dst: NodeId
    rtt_s: float
    bandwidth_bps: float  # bits per second


@dataclass(frozen=True, slots=True)
class Workload:
    """The traffic a plan is judged for."""

    prompt_tokens: int = 64
    new_tokens: int = 64
    requests_per_s: float = 1.0
    privacy: Privacy = Privacy.LOW
    privacy_depth: int = 1  # first layers pinned to trusted nodes
    kv_budget_tokens: int = 2048  # context kept per session when sizing memory
    concurrent_sessions: int = 1  # sessions in flight at once (they share batches)
    # Cost of one more session in a node's batched step, as a fraction of a
    # step of one session (measured from batch timings): 1.0 is no gain from
    # batching, 0.1 makes a batch of 10 cost 1.9 single steps.
    batch_marginal_cost: float = 1.0
    # Routes one entry may get when the offered load asks for capacity
    # (pipeline replicas); 1 plans one route per entry.
    max_replicas: int = 1


@dataclass(frozen=True, slots=True)
class Weights:
    """Objective weights: alpha * latency + beta * imbalance + gamma * privacy
    + delta * queueing."""

    alpha: float = 1.0
    beta: float = 0.1
    gamma: float = 10.0
    # Weight of the queueing the offered load causes (CostBreakdown.queueing_s).
    # 0 keeps the seed's objective; the planner's replica step weighs queueing
    # at least at alpha whatever this is.
    delta: float = 0.0


@dataclass(frozen=True, slots=True)
class ClusterState:
    """E(t) as the planner consumes it: nodes and the links between them."""

    nodes: tuple[NodeState, ...]
    links: tuple[LinkState, ...]

    def node(self, node_id: NodeId) -> NodeState:
        for n in self.nodes:
            if n.node_id == node_id:
                return n
        raise KeyError(node_id)

    def link(self, src: NodeId, dst: NodeId) -> LinkState | None:
        for link in self.links:
            if link.src == src and link.dst == dst:
                return link
        return None


@dataclass(frozen=True, slots=True)
class Segment:
    """Layers ``[start, end)`` on ``node``, plus the named ``parts`` it runs
    (``Part.EMBED`` before its layers, ``Part.HEAD`` after them)."""

    node: NodeId
    start: int
    end: int
    parts: frozenset[Part] = frozenset()

    def __post_init__(self) -> None:
        if self.start < 0 or self.end < self.start:
            raise ValueError(f"bad segment range [{self.start}, {self.end})")
        if not isinstance(self.parts, frozenset) or not all(isinstance(p, Part)
                                                             for p in self.parts):
            raise TypeError(f"segment parts must be a frozenset of Part, got {self.parts!r}")

    @property
    def has_embed(self) -> bool:
        return Part.EMBED in self.parts

    @property
    def has_head(self) -> bool:
        return Part.HEAD in self.parts

    @property
    def keys(self) -> tuple[LayerKey, ...]:
        """Every layer key this segment runs, in execution order."""
        return tuple(sorted((*self.parts, *range(self.start, self.end))))

    @property
    def num_layers(self) -> int:
        return self.end - self.start

    def sensitive_items(self, privacy_depth: int) -> int:
        """How many of embed, head and the first ``privacy_depth`` layers this
        segment holds: the parts that see raw input or output, pinned to
        trusted nodes (``edgesplit.core.trust``)."""
        return len(self.parts) + max(0, min(self.end, privacy_depth) - self.start)

    def is_sensitive(self, privacy_depth: int) -> bool:
        return self.sensitive_items(privacy_depth) > 0


@dataclass(frozen=True, slots=True)
class Route:
    """The ring one request passes: entry -> segments ... -> back to entry.

    One shape (checked by ``edgesplit.core.route.check_route``): ``segments[0]``
    runs on the entry with ``Part.EMBED`` and layers ``[0, k)``; interior
    segments hold consecutive non-empty ranges; the last segment is a
    zero-layer segment on the entry with ``Part.HEAD``.
    """

    entry: NodeId
    segments: tuple[Segment, ...]
    # Several routes may start at one entry (pipeline replicas; the entry
    # places each new session on one): 0, 1, ... tell them apart.
    replica: int = 0

    @property
    def key(self) -> str:
        """The route's id in a plan, on the wire and in a node's tables:
        the entry for replica 0, ``entry#r`` for replica ``r``."""
        return self.entry if self.replica == 0 else f"{self.entry}{REPLICA_MARK}{self.replica}"

    @property
    def nodes(self) -> tuple[NodeId, ...]:
        return tuple(s.node for s in self.segments)

    @property
    def cuts(self) -> tuple[int, ...]:
        """Interior cut points, e.g. (5, 11) for [0,5) [5,11) [11,16)."""
        return tuple(s.start for s in self.segments[1:] if s.num_layers > 0)


@dataclass(frozen=True, slots=True)
class Plan:
    """Desired state of the data plane for one epoch."""

    epoch: Epoch
    model_digest: str
    routes: tuple[Route, ...]

    def route_for(self, entry: NodeId) -> Route | None:
        """The entry's first route (replica 0 in a plan the planner made)."""
        for r in self.routes:
            if r.entry == entry:
                return r
        return None

    def routes_for(self, entry: NodeId) -> tuple[Route, ...]:
        """Every route (replica) that starts at ``entry``."""
        return tuple(r for r in self.routes if r.entry == entry)

    @property
    def entries(self) -> tuple[NodeId, ...]:
        """Entry nodes in route order, each once."""
        return tuple(dict.fromkeys(r.entry for r in self.routes))

    @property
    def nodes(self) -> frozenset[NodeId]:
        return frozenset(s.node for r in self.routes for s in r.segments)


@dataclass(frozen=True, slots=True)
class CostBreakdown:
    """The objective and its parts for one plan under one state."""

    total: float
    latency_s: float  # one decode step around the ring (worst route)
    ttft_s: float  # time to first token for the workload's prompt
    bottleneck_s: float  # slowest stage: bounds pipelined throughput
    imbalance: float  # spread of node utilisation after placement
    privacy_penalty: float
    feasible: bool = True
    reason: str = ""
    per_node_utilization: tuple[tuple[NodeId, float], ...] = field(default=())
    # Decode step averaged over routes (each serves an equal share of requests);
    # ``total`` uses this one. Equal to ``latency_s`` for a single route.
    mean_latency_s: float = 0.0
    # Waiting per decode step behind the plan's own load at each node (M/M/1
    # at each node's utilisation from the offered load), averaged over routes.
    queueing_s: float = 0.0
    # Request rate at which the busiest node of the plan saturates (inf: no load).
    capacity_rps: float = math.inf
