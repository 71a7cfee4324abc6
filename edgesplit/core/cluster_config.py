"""Plain data (parsed YAML / JSON) to planner inputs, and back for profiles and plans.

The CLI parses the files; these functions take the resulting dicts, so they
stay pure and testable. Errors are ``ConfigError`` with the offending path.

Cluster (YAML)::

    reference_tflops: 1.0          # optional; a node's ``speed`` multiplies it
    nodes:
      - id: phone                  # required, unique
        trust: trusted             # trusted | untrusted (default untrusted)
        memory_gb: 8               # memory for weights + KV, GB (1e9 bytes)
        tflops: 2.0                # effective decode TFLOP/s, or instead:
        speed: 0.5                 #   speed * reference_tflops
        utilization: 0.1           # background load 0..1 (default 0)
        trusted_by: [phone]        # entries that trust it (default: all, when trusted)
        alive: true                # default true
        address: 10.0.0.2:50051    # optional
        layer_ms: {0: 1.5, embed: 0.1, head: 0.3}   # optional measured ms per token
    links:                         # directed; symmetric: true (default) adds the reverse
      - {src: phone, dst: edge, rtt_ms: 5, bandwidth_mbps: 100}
    default_link: {rtt_ms: 20, bandwidth_mbps: 50}   # optional: every pair not listed
    entries: [phone]               # optional default entry nodes
    workload: {prompt_tokens: 64, new_tokens: 64, requests_per_s: 1.0,
               privacy: low, privacy_depth: 1, kv_budget_tokens: 2048,
               concurrent_sessions: 1, batch_marginal_cost: 1.0,
               max_replicas: 1}
    weights: {alpha: 1.0, beta: 0.1, gamma: 10.0}

Model profile (JSON, as ``edgesplit model profile DIR --json`` prints it)::

    {"name": str, "digest": str (optional),
     "activation_bytes_per_token": int,
     "embed": {"weight_bytes": int, "flops_per_token": float, "kv_bytes_per_token": int},
     "head":  {...same keys...},
     "layers": [{...same keys...}, ...]}

``kv_bytes_per_token`` defaults to 0; unknown keys are ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from edgesplit.core.types import (
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
    parse_layer_key,
)
from edgesplit.errors import Code, DomainError

GB = 1_000_000_000


class ConfigError(DomainError, ValueError):
    """A cluster or profile document that cannot be used, with where and why."""

    code = Code.INVALID_ARGUMENT


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    state: ClusterState
    entries: tuple[NodeId, ...] = ()
    workload: Workload = field(default_factory=Workload)
    weights: Weights = field(default_factory=Weights)


def _num(doc: Mapping[str, Any], key: str, where: str, default: float | None = None) -> float:
    value = doc.get(key, default)
    if value is None:
        raise ConfigError(f"{where}: missing {key!r}")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}: {key!r} must be a number, got {value!r}")
    return float(value)


def _mapping(doc: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(doc).__name__}")
    return doc


def _node(doc: Any, where: str, reference_flops: float) -> NodeState:
    doc = _mapping(doc, where)
    if "id" not in doc:
        raise ConfigError(f"{where}: missing 'id'")
    trust_name = str(doc.get("trust", "untrusted")).lower()
    if trust_name not in ("trusted", "untrusted"):
        raise ConfigError(f"{where}: trust must be trusted or untrusted, got {trust_name!r}")
    if "tflops" in doc:
        flops = _num(doc, "tflops", where) * 1e12
    elif "speed" in doc:
        flops = _num(doc, "speed", where) * reference_flops
    else:
        raise ConfigError(f"{where}: give 'tflops' or 'speed'")
    utilization = _num(doc, "utilization", where, 0.0)
    if not 0.0 <= utilization <= 1.0:
        raise ConfigError(f"{where}: utilization must be within 0..1")
    measured = []
    for key, ms in _mapping(doc.get("layer_ms", {}), f"{where}.layer_ms").items():
        try:
            index = parse_layer_key(key)
        except ValueError:
            raise ConfigError(f"{where}.layer_ms: bad layer {key!r}") from None
        measured.append((index, float(ms) / 1000.0))
    return NodeState(
        node_id=NodeId(str(doc["id"])),
        trust=Trust.TRUSTED if trust_name == "trusted" else Trust.UNTRUSTED,
        memory_bytes=int(_num(doc, "memory_gb", where) * GB),
        flops_per_s=flops,
        utilization=utilization,
        alive=bool(doc.get("alive", True)),
        layer_seconds=tuple(sorted(measured)),
        trusted_by=tuple(NodeId(str(x)) for x in doc.get("trusted_by", ())),
        address=str(doc.get("address", "")),
    )


def _link(src: str, dst: str, doc: Mapping[str, Any], where: str) -> LinkState:
    bandwidth = _num(doc, "bandwidth_mbps", where) * 1e6
    if bandwidth <= 0:
        raise ConfigError(f"{where}: bandwidth_mbps must be positive")
    return LinkState(NodeId(src), NodeId(dst), _num(doc, "rtt_ms", where) / 1000.0, bandwidth)


def cluster_from_dict(doc: Any) -> ClusterConfig:
    """A ``ClusterConfig`` from a parsed cluster YAML (schema in the module doc)."""
    doc = _mapping(doc, "cluster")
    reference = _num(doc, "reference_tflops", "cluster", 1.0) * 1e12
    raw_nodes = doc.get("nodes")
    if not isinstance(raw_nodes, list) or not raw_nodes:
        raise ConfigError("cluster: 'nodes' must be a non-empty list")
    nodes = tuple(_node(d, f"nodes[{i}]", reference) for i, d in enumerate(raw_nodes))
    ids = [n.node_id for n in nodes]
    if len(set(ids)) != len(ids):
        raise ConfigError("cluster: node ids must be unique")
    links: dict[tuple[str, str], LinkState] = {}
    for i, raw in enumerate(doc.get("links", []) or []):
        where = f"links[{i}]"
        d = _mapping(raw, where)
        src, dst = str(d.get("src")), str(d.get("dst"))
        for end in (src, dst):
            if end not in ids:
                raise ConfigError(f"{where}: unknown node {end!r}")
        links[(src, dst)] = _link(src, dst, d, where)
        if d.get("symmetric", True):
            links.setdefault((dst, src), _link(dst, src, d, where))
    if "default_link" in doc:
        d = _mapping(doc["default_link"], "default_link")
        for a in ids:
            for b in ids:
                if a != b and (a, b) not in links:
                    links[(a, b)] = _link(a, b, d, "default_link")
    entries = tuple(NodeId(str(e)) for e in doc.get("entries", ()))
    for e in entries:
        if e not in ids:
            raise ConfigError(f"entries: unknown node {e!r}")
    return ClusterConfig(
        state=ClusterState(nodes, tuple(links.values())),
        entries=entries,
        workload=workload_from_dict(doc.get("workload", {})),
        weights=weights_from_dict(doc.get("weights", {})),
    )


def workload_from_dict(doc: Any) -> Workload:
    doc = _mapping(doc, "workload")
    base = Workload()
    privacy = str(doc.get("privacy", "low")).lower()
    if privacy not in ("low", "high"):
        raise ConfigError(f"workload: privacy must be low or high, got {privacy!r}")
    return Workload(
        prompt_tokens=int(_num(doc, "prompt_tokens", "workload", base.prompt_tokens)),
        new_tokens=int(_num(doc, "new_tokens", "workload", base.new_tokens)),
        requests_per_s=_num(doc, "requests_per_s", "workload", base.requests_per_s),
        privacy=Privacy.HIGH if privacy == "high" else Privacy.LOW,
        privacy_depth=int(_num(doc, "privacy_depth", "workload", base.privacy_depth)),
        kv_budget_tokens=int(_num(doc, "kv_budget_tokens", "workload", base.kv_budget_tokens)),
        concurrent_sessions=int(
            _num(doc, "concurrent_sessions", "workload", base.concurrent_sessions)
        ),
        batch_marginal_cost=_num(doc, "batch_marginal_cost", "workload",
                                 base.batch_marginal_cost),
        max_replicas=int(_num(doc, "max_replicas", "workload", base.max_replicas)),
    )


def weights_from_dict(doc: Any) -> Weights:
    doc = _mapping(doc, "weights")
    base = Weights()
    return Weights(
        alpha=_num(doc, "alpha", "weights", base.alpha),
        beta=_num(doc, "beta", "weights", base.beta),
        gamma=_num(doc, "gamma", "weights", base.gamma),
    )


def _layer(doc: Any, where: str) -> LayerCost:
    doc = _mapping(doc, where)
    weight = _num(doc, "weight_bytes", where)
    flops = _num(doc, "flops_per_token", where)
    kv = _num(doc, "kv_bytes_per_token", where, 0)
    if weight < 0 or flops < 0 or kv < 0:
        raise ConfigError(f"{where}: sizes must not be negative")
    return LayerCost(int(weight), flops, int(kv))


def profile_from_json(doc: Any) -> ModelProfile:
    """A ``ModelProfile`` from the profile JSON (schema in the module doc)."""
    doc = _mapping(doc, "profile")
    layers = doc.get("layers")
    if not isinstance(layers, list) or not layers:
        raise ConfigError("profile: 'layers' must be a non-empty list")
    if "num_layers" in doc and int(doc["num_layers"]) != len(layers):
        raise ConfigError(f"profile: num_layers {doc['num_layers']} != {len(layers)} layers")
    if "name" not in doc:
        raise ConfigError("profile: missing 'name'")
    return ModelProfile(
        name=str(doc["name"]),
        layers=tuple(_layer(d, f"layers[{i}]") for i, d in enumerate(layers)),
        embed=_layer(doc.get("embed"), "embed"),
        head=_layer(doc.get("head"), "head"),
        activation_bytes_per_token=int(_num(doc, "activation_bytes_per_token", "profile")),
        digest=str(doc.get("digest", "")),
    )


def profile_to_json(profile: ModelProfile) -> dict[str, Any]:
    """The profile JSON of ``profile`` (``profile_from_json`` reads it back)."""

    def layer(c: LayerCost) -> dict[str, Any]:
        return {
            "weight_bytes": c.weight_bytes,
            "flops_per_token": c.flops_per_token,
            "kv_bytes_per_token": c.kv_bytes_per_token,
        }

    return {
        "name": profile.name,
        "digest": profile.digest,
        "activation_bytes_per_token": profile.activation_bytes_per_token,
        "embed": layer(profile.embed),
        "head": layer(profile.head),
        "layers": [layer(c) for c in profile.layers],
    }


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    """A JSON-ready view of a plan (``plan_from_dict`` reads it back)."""
    return {
        "epoch": plan.epoch,
        "model_digest": plan.model_digest,
        "routes": [
            {
                "entry": r.entry,
                **({"replica": r.replica} if r.replica else {}),
                "segments": [
                    {
                        "node": s.node,
                        "start": s.start,
                        "end": s.end,
                        "parts": sorted(p.value for p in s.parts),
                    }
                    for s in r.segments
                ],
            }
            for r in plan.routes
        ],
    }


def plan_from_dict(doc: Any) -> Plan:
    doc = _mapping(doc, "plan")
    routes = []
    for i, raw in enumerate(doc.get("routes", [])):
        r = _mapping(raw, f"routes[{i}]")
        segs = []
        for j, s in enumerate(r.get("segments", [])):
            s = _mapping(s, f"routes[{i}].segments[{j}]")
            try:
                segs.append(
                    Segment(
                        NodeId(str(s["node"])),
                        int(s["start"]),
                        int(s["end"]),
                        frozenset(Part(p) for p in s.get("parts", ())),
                    )
                )
            except (KeyError, ValueError, TypeError) as exc:
                raise ConfigError(f"routes[{i}].segments[{j}]: {exc}") from None
        routes.append(Route(NodeId(str(r.get("entry"))), tuple(segs), int(r.get("replica", 0))))
    return Plan(Epoch(int(doc.get("epoch", 0))), str(doc.get("model_digest", "")), tuple(routes))
