"""The one place where core domain values and protobuf messages meet
(docs/architecture.md §10.4): ``*_to_proto`` / ``*_from_proto`` for every shared type."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Any, Generic, TypeVar

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import code_pb2

from edgesplit.core.types import (
    ClusterState,
    CostBreakdown,
    Epoch,
    LayerCost,
    LayerKey,
    LinkState,
    Mode,
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
from edgesplit.errors import Code, DomainError
from edgesplit.v1 import common_pb2 as pb


class ConversionError(DomainError, ValueError):
    """A message is malformed; ``field`` names the offending field."""

    code = Code.INVALID_ARGUMENT

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}", field=field)


E = TypeVar("E", bound=enum.Enum)


class EnumCodec(Generic[E]):
    """A core enum <-> a proto enum, member by member and by name: core
    ``Privacy.HIGH`` is proto ``PRIVACY_HIGH``. Built at import, so a member
    without a twin fails there, not in a call. Proto value 0 is always
    ``*_UNSPECIFIED``: ``decode`` answers ``default`` for it, or rejects it
    naming the field when there is none."""

    def __init__(self, core: type[E], proto: Any, prefix: str) -> None:
        self.core = core
        self._to: dict[E, int] = {m: proto.Value(prefix + m.name) for m in core}
        self._from: dict[int, E] = {v: k for k, v in self._to.items()}
        if 0 in self._from or len(self._from) != len(self._to):
            raise TypeError(f"{prefix}*: value 0 must be {prefix}UNSPECIFIED, values unique")
        self.name = proto.DESCRIPTOR.name

    def encode(self, value: E) -> Any:
        return self._to[value]

    def decode(self, value: int, field: str, default: E | None = None) -> E:
        if value == 0 and default is not None:
            return default
        found = self._from.get(value)
        if found is None:
            what = "not set" if value == 0 else f"unknown {self.name} {value}"
            raise ConversionError(field, what)
        return found


PARTS = EnumCodec(Part, pb.Part, "PART_")
TRUST = EnumCodec(Trust, pb.Trust, "TRUST_")
PRIVACY = EnumCodec(Privacy, pb.Privacy, "PRIVACY_")
MODES = EnumCodec(Mode, pb.PlanMode, "PLAN_MODE_")


# ---- time: Timestamp / Duration <-> float seconds (the core's unit) -------------------
def timestamp(unix_s: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(round(unix_s * 1e9))
    return ts


def unix_seconds(ts: Timestamp) -> float:
    return ts.ToNanoseconds() / 1e9


def duration(seconds: float) -> Duration:
    d = Duration()
    d.FromNanoseconds(round(seconds * 1e9))
    return d


def seconds(d: Duration, field: str = "", minimum: float | None = 0.0) -> float:
    """``d`` in seconds; below ``minimum`` (default: negative) is INVALID_ARGUMENT."""
    s: float = d.ToNanoseconds() / 1e9
    if minimum is not None and s < minimum:
        raise ConversionError(field or "duration", f"must be at least {minimum} s")
    return s


# ---- status codes and wire dtypes: names inside, enums on the wire ------------------
def status_code(name: str) -> code_pb2.Code:
    """A gRPC status code name ("UNAVAILABLE") as google.rpc.Code."""
    try:
        return code_pb2.Code.Value(name)
    except ValueError:
        return code_pb2.UNKNOWN


def status_name(value: int) -> str:
    return code_pb2.Code.Name(value) if value in code_pb2.Code.values() else "UNKNOWN"


def wire_dtype_to_proto(name: str) -> pb.WireDtype:
    """A tensor codec name ("bfloat16") as WireDtype."""
    try:
        return pb.WireDtype.Value(f"WIRE_DTYPE_{name.upper()}")
    except ValueError:
        raise ConversionError("wire_dtype", f"unknown wire dtype {name!r}") from None


def wire_dtype_from_proto(value: int, field: str, default: str) -> str:
    """The codec name; ``default`` for UNSPECIFIED."""
    if value == pb.WIRE_DTYPE_UNSPECIFIED:
        return default
    if value not in pb.WireDtype.values():
        raise ConversionError(field, f"unknown wire dtype {value}")
    return pb.WireDtype.Name(value).removeprefix("WIRE_DTYPE_").lower()


def part_to_proto(p: Part) -> pb.Part:
    return PARTS.encode(p)


def part_from_proto(value: int, field: str) -> Part:
    return PARTS.decode(value, field)


def layer_ref_to_proto(key: LayerKey) -> pb.LayerRef:
    if isinstance(key, Part):
        return pb.LayerRef(part=part_to_proto(key))
    return pb.LayerRef(index=key)


def layer_ref_from_proto(m: pb.LayerRef, field: str) -> LayerKey:
    which = m.WhichOneof("ref")
    if which == "part":
        return part_from_proto(m.part, f"{field}.part")
    if which == "index":
        return int(m.index)
    raise ConversionError(field, "neither index nor part set")


def layer_seconds_to_proto(pairs: Iterable[tuple[LayerKey, float]]) -> list[pb.LayerSeconds]:
    return [pb.LayerSeconds(layer=layer_ref_to_proto(k), seconds=v) for k, v in pairs]


def layer_seconds_from_proto(items: Iterable[pb.LayerSeconds], field: str
                             ) -> tuple[tuple[LayerKey, float], ...]:
    table: dict[LayerKey, float] = {}
    for i, item in enumerate(items):
        key = layer_ref_from_proto(item.layer, f"{field}[{i}].layer")
        if key in table:
            raise ConversionError(f"{field}[{i}].layer", f"{key!r} given twice")
        if not item.seconds >= 0:  # NaN too
            raise ConversionError(f"{field}[{i}].seconds", "must be a non-negative number")
        table[key] = item.seconds
    return tuple(sorted(table.items()))


def segment_to_proto(s: Segment) -> pb.Segment:
    return pb.Segment(node_id=s.node, start=s.start, end=s.end,
                      parts=[part_to_proto(p) for p in sorted(s.parts)])


def segment_from_proto(m: pb.Segment, field: str = "segment") -> Segment:
    if not m.node_id:
        raise ConversionError(f"{field}.node_id", "empty")
    if m.end < m.start:
        raise ConversionError(field, f"end {m.end} < start {m.start}")
    parts = [part_from_proto(p, f"{field}.parts[{i}]") for i, p in enumerate(m.parts)]
    if len(set(parts)) != len(parts):
        raise ConversionError(f"{field}.parts", "a part given twice")
    return Segment(NodeId(m.node_id), m.start, m.end, frozenset(parts))


def route_to_proto(r: Route) -> pb.Route:
    return pb.Route(entry=r.entry, segments=[segment_to_proto(s) for s in r.segments],
                    replica=r.replica)


def route_from_proto(m: pb.Route, field: str = "route") -> Route:
    if not m.entry:
        raise ConversionError(f"{field}.entry", "empty")
    segs = tuple(segment_from_proto(s, f"{field}.segments[{i}]") for i, s in enumerate(m.segments))
    return Route(NodeId(m.entry), segs, m.replica)


def plan_to_proto(p: Plan) -> pb.Plan:
    return pb.Plan(epoch=p.epoch, model_digest=p.model_digest,
                   routes=[route_to_proto(r) for r in p.routes])


def plan_from_proto(m: pb.Plan, field: str = "plan") -> Plan:
    routes = tuple(route_from_proto(r, f"{field}.routes[{i}]") for i, r in enumerate(m.routes))
    return Plan(Epoch(m.epoch), m.model_digest, routes)


def layer_cost_to_proto(c: LayerCost) -> pb.LayerCost:
    return pb.LayerCost(weight_bytes=c.weight_bytes, flops_per_token=c.flops_per_token,
                        kv_bytes_per_token=c.kv_bytes_per_token)


def layer_cost_from_proto(m: pb.LayerCost, field: str) -> LayerCost:
    if m.flops_per_token < 0:
        raise ConversionError(f"{field}.flops_per_token", "negative")
    return LayerCost(m.weight_bytes, m.flops_per_token, m.kv_bytes_per_token)


def profile_to_proto(p: ModelProfile) -> pb.ModelProfile:
    return pb.ModelProfile(
        name=p.name, digest=p.digest, layers=[layer_cost_to_proto(c) for c in p.layers],
        embed=layer_cost_to_proto(p.embed), head=layer_cost_to_proto(p.head),
        activation_bytes_per_token=p.activation_bytes_per_token)


def profile_from_proto(m: pb.ModelProfile, field: str = "profile") -> ModelProfile:
    if not m.layers:
        raise ConversionError(f"{field}.layers", "empty")
    return ModelProfile(
        name=m.name,
        layers=tuple(layer_cost_from_proto(c, f"{field}.layers[{i}]")
                     for i, c in enumerate(m.layers)),
        embed=layer_cost_from_proto(m.embed, f"{field}.embed"),
        head=layer_cost_from_proto(m.head, f"{field}.head"),
        activation_bytes_per_token=m.activation_bytes_per_token,
        digest=m.digest)


def node_to_proto(n: NodeState) -> pb.NodeState:
    return pb.NodeState(
        node_id=n.node_id, trust=TRUST.encode(n.trust), memory_bytes=n.memory_bytes,
        flops_per_s=n.flops_per_s, utilization=n.utilization, alive=n.alive,
        layer_seconds=layer_seconds_to_proto(n.layer_seconds), trusted_by=list(n.trusted_by),
        address=n.address)


def node_from_proto(m: pb.NodeState, field: str = "node") -> NodeState:
    if not m.node_id:
        raise ConversionError(f"{field}.node_id", "empty")
    if m.flops_per_s <= 0 and not m.layer_seconds:
        raise ConversionError(f"{field}.flops_per_s", "must be positive")
    if not 0.0 <= m.utilization <= 1.0:
        raise ConversionError(f"{field}.utilization", "must be in [0, 1]")
    return NodeState(
        node_id=NodeId(m.node_id), trust=TRUST.decode(m.trust, f"{field}.trust", Trust.UNTRUSTED),
        memory_bytes=m.memory_bytes,
        flops_per_s=m.flops_per_s, utilization=m.utilization, alive=m.alive,
        layer_seconds=layer_seconds_from_proto(m.layer_seconds, f"{field}.layer_seconds"),
        trusted_by=tuple(NodeId(t) for t in m.trusted_by), address=m.address)


def link_to_proto(link: LinkState) -> pb.LinkState:
    return pb.LinkState(src=link.src, dst=link.dst, rtt_s=link.rtt_s,
                        bandwidth_bps=link.bandwidth_bps)


def link_from_proto(m: pb.LinkState, field: str = "link") -> LinkState:
    if m.rtt_s < 0:
        raise ConversionError(f"{field}.rtt_s", "negative")
    if m.bandwidth_bps <= 0:
        raise ConversionError(f"{field}.bandwidth_bps", "must be positive")
    return LinkState(NodeId(m.src), NodeId(m.dst), m.rtt_s, m.bandwidth_bps)


def cluster_to_proto(c: ClusterState) -> pb.ClusterState:
    return pb.ClusterState(nodes=[node_to_proto(n) for n in c.nodes],
                           links=[link_to_proto(link) for link in c.links])


def cluster_from_proto(m: pb.ClusterState, field: str = "state") -> ClusterState:
    nodes = tuple(node_from_proto(n, f"{field}.nodes[{i}]") for i, n in enumerate(m.nodes))
    ids = {n.node_id for n in nodes}
    if len(ids) != len(nodes):
        raise ConversionError(f"{field}.nodes", "duplicate node_id")
    links = []
    for i, raw in enumerate(m.links):
        link = link_from_proto(raw, f"{field}.links[{i}]")
        for end in ("src", "dst"):
            if getattr(link, end) not in ids:
                raise ConversionError(f"{field}.links[{i}].{end}",
                                      f"unknown node {getattr(link, end)!r}")
        links.append(link)
    return ClusterState(nodes, tuple(links))


def workload_to_proto(w: Workload) -> pb.Workload:
    return pb.Workload(
        prompt_tokens=w.prompt_tokens, new_tokens=w.new_tokens,
        requests_per_s=w.requests_per_s, privacy=PRIVACY.encode(w.privacy),
        privacy_depth=w.privacy_depth, kv_budget_tokens=w.kv_budget_tokens,
        concurrent_sessions=w.concurrent_sessions, batch_marginal_cost=w.batch_marginal_cost,
        max_replicas=w.max_replicas)


def workload_from_proto(m: pb.Workload) -> Workload:
    """Zero fields mean "default" so a client may send an empty Workload."""
    d = Workload()
    if m.requests_per_s < 0:
        raise ConversionError("workload.requests_per_s", "negative")
    marginal = m.batch_marginal_cost if m.HasField("batch_marginal_cost") \
        else d.batch_marginal_cost
    if not 0.0 <= marginal <= 1.0:
        raise ConversionError("workload.batch_marginal_cost", "must be within [0, 1]")
    return Workload(
        prompt_tokens=m.prompt_tokens or d.prompt_tokens,
        new_tokens=m.new_tokens or d.new_tokens,
        requests_per_s=m.requests_per_s or d.requests_per_s,
        privacy=PRIVACY.decode(m.privacy, "workload.privacy", d.privacy),
        privacy_depth=m.privacy_depth or d.privacy_depth,
        kv_budget_tokens=m.kv_budget_tokens or d.kv_budget_tokens,
        concurrent_sessions=m.concurrent_sessions or d.concurrent_sessions,
        batch_marginal_cost=marginal, max_replicas=m.max_replicas or d.max_replicas)


def weights_from_proto(m: pb.ObjectiveWeights) -> Weights:
    if min(m.alpha, m.beta, m.gamma, m.delta) < 0:
        raise ConversionError("weights", "negative weight")
    if m.alpha == m.beta == m.gamma == 0:
        return Weights(delta=m.delta)
    return Weights(m.alpha, m.beta, m.gamma, m.delta)


def weights_to_proto(w: Weights) -> pb.ObjectiveWeights:
    return pb.ObjectiveWeights(alpha=w.alpha, beta=w.beta, gamma=w.gamma, delta=w.delta)


def mode_from_proto(m: int) -> Mode:
    return MODES.decode(m, "mode", Mode.PLACEMENT)


def cost_to_proto(c: CostBreakdown) -> pb.CostBreakdown:
    return pb.CostBreakdown(
        total=c.total, latency_s=c.latency_s, ttft_s=c.ttft_s, bottleneck_s=c.bottleneck_s,
        imbalance=c.imbalance, privacy_penalty=c.privacy_penalty, feasible=c.feasible,
        reason=c.reason, node_utilization=dict(c.per_node_utilization),
        mean_latency_s=c.mean_latency_s, queueing_s=c.queueing_s, capacity_rps=c.capacity_rps)


def cost_from_proto(m: pb.CostBreakdown) -> CostBreakdown:
    return CostBreakdown(
        total=m.total, latency_s=m.latency_s, ttft_s=m.ttft_s, bottleneck_s=m.bottleneck_s,
        imbalance=m.imbalance, privacy_penalty=m.privacy_penalty, feasible=m.feasible,
        reason=m.reason,
        per_node_utilization=tuple(sorted((NodeId(k), v) for k, v in m.node_utilization.items())),
        mean_latency_s=m.mean_latency_s, queueing_s=m.queueing_s, capacity_rps=m.capacity_rps)
