from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Trust(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRUST_UNSPECIFIED: _ClassVar[Trust]
    TRUST_UNTRUSTED: _ClassVar[Trust]
    TRUST_TRUSTED: _ClassVar[Trust]

class Privacy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PRIVACY_UNSPECIFIED: _ClassVar[Privacy]
    PRIVACY_LOW: _ClassVar[Privacy]
    PRIVACY_HIGH: _ClassVar[Privacy]

class WireDtype(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WIRE_DTYPE_UNSPECIFIED: _ClassVar[WireDtype]
    WIRE_DTYPE_FLOAT32: _ClassVar[WireDtype]
    WIRE_DTYPE_BFLOAT16: _ClassVar[WireDtype]
    WIRE_DTYPE_FLOAT16: _ClassVar[WireDtype]

class PlanMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PLAN_MODE_UNSPECIFIED: _ClassVar[PlanMode]
    PLAN_MODE_PLACEMENT: _ClassVar[PlanMode]
    PLAN_MODE_RESPLIT: _ClassVar[PlanMode]

class Part(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PART_UNSPECIFIED: _ClassVar[Part]
    PART_EMBED: _ClassVar[Part]
    PART_HEAD: _ClassVar[Part]
TRUST_UNSPECIFIED: Trust
TRUST_UNTRUSTED: Trust
TRUST_TRUSTED: Trust
PRIVACY_UNSPECIFIED: Privacy
PRIVACY_LOW: Privacy
PRIVACY_HIGH: Privacy
WIRE_DTYPE_UNSPECIFIED: WireDtype
WIRE_DTYPE_FLOAT32: WireDtype
WIRE_DTYPE_BFLOAT16: WireDtype
WIRE_DTYPE_FLOAT16: WireDtype
PLAN_MODE_UNSPECIFIED: PlanMode
PLAN_MODE_PLACEMENT: PlanMode
PLAN_MODE_RESPLIT: PlanMode
PART_UNSPECIFIED: Part
PART_EMBED: Part
PART_HEAD: Part

class LayerRef(_message.Message):
    __slots__ = ("index", "part")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    PART_FIELD_NUMBER: _ClassVar[int]
    index: int
    part: Part
    def __init__(self, index: _Optional[int] = ..., part: _Optional[_Union[Part, str]] = ...) -> None: ...

class LayerSeconds(_message.Message):
    __slots__ = ("layer", "seconds")
    LAYER_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    layer: LayerRef
    seconds: float
    def __init__(self, layer: _Optional[_Union[LayerRef, _Mapping]] = ..., seconds: _Optional[float] = ...) -> None: ...

class LayerCost(_message.Message):
    __slots__ = ("weight_bytes", "flops_per_token", "kv_bytes_per_token")
    WEIGHT_BYTES_FIELD_NUMBER: _ClassVar[int]
    FLOPS_PER_TOKEN_FIELD_NUMBER: _ClassVar[int]
    KV_BYTES_PER_TOKEN_FIELD_NUMBER: _ClassVar[int]
    weight_bytes: int
    flops_per_token: float
    kv_bytes_per_token: int
    def __init__(self, weight_bytes: _Optional[int] = ..., flops_per_token: _Optional[float] = ..., kv_bytes_per_token: _Optional[int] = ...) -> None: ...

class ModelProfile(_message.Message):
    __slots__ = ("name", "digest", "layers", "embed", "head", "activation_bytes_per_token")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    EMBED_FIELD_NUMBER: _ClassVar[int]
    HEAD_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_BYTES_PER_TOKEN_FIELD_NUMBER: _ClassVar[int]
    name: str
    digest: str
    layers: _containers.RepeatedCompositeFieldContainer[LayerCost]
    embed: LayerCost
    head: LayerCost
    activation_bytes_per_token: int
    def __init__(self, name: _Optional[str] = ..., digest: _Optional[str] = ..., layers: _Optional[_Iterable[_Union[LayerCost, _Mapping]]] = ..., embed: _Optional[_Union[LayerCost, _Mapping]] = ..., head: _Optional[_Union[LayerCost, _Mapping]] = ..., activation_bytes_per_token: _Optional[int] = ...) -> None: ...

class NodeState(_message.Message):
    __slots__ = ("node_id", "trust", "memory_bytes", "flops_per_s", "utilization", "alive", "layer_seconds", "trusted_by", "address")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    TRUST_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    FLOPS_PER_S_FIELD_NUMBER: _ClassVar[int]
    UTILIZATION_FIELD_NUMBER: _ClassVar[int]
    ALIVE_FIELD_NUMBER: _ClassVar[int]
    LAYER_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TRUSTED_BY_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    trust: Trust
    memory_bytes: int
    flops_per_s: float
    utilization: float
    alive: bool
    layer_seconds: _containers.RepeatedCompositeFieldContainer[LayerSeconds]
    trusted_by: _containers.RepeatedScalarFieldContainer[str]
    address: str
    def __init__(self, node_id: _Optional[str] = ..., trust: _Optional[_Union[Trust, str]] = ..., memory_bytes: _Optional[int] = ..., flops_per_s: _Optional[float] = ..., utilization: _Optional[float] = ..., alive: _Optional[bool] = ..., layer_seconds: _Optional[_Iterable[_Union[LayerSeconds, _Mapping]]] = ..., trusted_by: _Optional[_Iterable[str]] = ..., address: _Optional[str] = ...) -> None: ...

class LinkState(_message.Message):
    __slots__ = ("src", "dst", "rtt_s", "bandwidth_bps")
    SRC_FIELD_NUMBER: _ClassVar[int]
    DST_FIELD_NUMBER: _ClassVar[int]
    RTT_S_FIELD_NUMBER: _ClassVar[int]
    BANDWIDTH_BPS_FIELD_NUMBER: _ClassVar[int]
    src: str
    dst: str
    rtt_s: float
    bandwidth_bps: float
    def __init__(self, src: _Optional[str] = ..., dst: _Optional[str] = ..., rtt_s: _Optional[float] = ..., bandwidth_bps: _Optional[float] = ...) -> None: ...

class ClusterState(_message.Message):
    __slots__ = ("nodes", "links")
    NODES_FIELD_NUMBER: _ClassVar[int]
    LINKS_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[NodeState]
    links: _containers.RepeatedCompositeFieldContainer[LinkState]
    def __init__(self, nodes: _Optional[_Iterable[_Union[NodeState, _Mapping]]] = ..., links: _Optional[_Iterable[_Union[LinkState, _Mapping]]] = ...) -> None: ...

class Workload(_message.Message):
    __slots__ = ("prompt_tokens", "new_tokens", "requests_per_s", "privacy", "privacy_depth", "kv_budget_tokens", "concurrent_sessions", "batch_marginal_cost", "max_replicas")
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_PER_S_FIELD_NUMBER: _ClassVar[int]
    PRIVACY_FIELD_NUMBER: _ClassVar[int]
    PRIVACY_DEPTH_FIELD_NUMBER: _ClassVar[int]
    KV_BUDGET_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CONCURRENT_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    BATCH_MARGINAL_COST_FIELD_NUMBER: _ClassVar[int]
    MAX_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    prompt_tokens: int
    new_tokens: int
    requests_per_s: float
    privacy: Privacy
    privacy_depth: int
    kv_budget_tokens: int
    concurrent_sessions: int
    batch_marginal_cost: float
    max_replicas: int
    def __init__(self, prompt_tokens: _Optional[int] = ..., new_tokens: _Optional[int] = ..., requests_per_s: _Optional[float] = ..., privacy: _Optional[_Union[Privacy, str]] = ..., privacy_depth: _Optional[int] = ..., kv_budget_tokens: _Optional[int] = ..., concurrent_sessions: _Optional[int] = ..., batch_marginal_cost: _Optional[float] = ..., max_replicas: _Optional[int] = ...) -> None: ...

class ObjectiveWeights(_message.Message):
    __slots__ = ("alpha", "beta", "gamma", "delta")
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    BETA_FIELD_NUMBER: _ClassVar[int]
    GAMMA_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    alpha: float
    beta: float
    gamma: float
    delta: float
    def __init__(self, alpha: _Optional[float] = ..., beta: _Optional[float] = ..., gamma: _Optional[float] = ..., delta: _Optional[float] = ...) -> None: ...

class Segment(_message.Message):
    __slots__ = ("node_id", "start", "end", "parts")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    PARTS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    start: int
    end: int
    parts: _containers.RepeatedScalarFieldContainer[Part]
    def __init__(self, node_id: _Optional[str] = ..., start: _Optional[int] = ..., end: _Optional[int] = ..., parts: _Optional[_Iterable[_Union[Part, str]]] = ...) -> None: ...

class Route(_message.Message):
    __slots__ = ("entry", "segments", "replica")
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    entry: str
    segments: _containers.RepeatedCompositeFieldContainer[Segment]
    replica: int
    def __init__(self, entry: _Optional[str] = ..., segments: _Optional[_Iterable[_Union[Segment, _Mapping]]] = ..., replica: _Optional[int] = ...) -> None: ...

class Plan(_message.Message):
    __slots__ = ("epoch", "model_digest", "routes")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    MODEL_DIGEST_FIELD_NUMBER: _ClassVar[int]
    ROUTES_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    model_digest: str
    routes: _containers.RepeatedCompositeFieldContainer[Route]
    def __init__(self, epoch: _Optional[int] = ..., model_digest: _Optional[str] = ..., routes: _Optional[_Iterable[_Union[Route, _Mapping]]] = ...) -> None: ...

class CostBreakdown(_message.Message):
    __slots__ = ("total", "latency_s", "ttft_s", "bottleneck_s", "imbalance", "privacy_penalty", "feasible", "reason", "node_utilization", "mean_latency_s", "queueing_s", "capacity_rps")
    class NodeUtilizationEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    LATENCY_S_FIELD_NUMBER: _ClassVar[int]
    TTFT_S_FIELD_NUMBER: _ClassVar[int]
    BOTTLENECK_S_FIELD_NUMBER: _ClassVar[int]
    IMBALANCE_FIELD_NUMBER: _ClassVar[int]
    PRIVACY_PENALTY_FIELD_NUMBER: _ClassVar[int]
    FEASIBLE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    NODE_UTILIZATION_FIELD_NUMBER: _ClassVar[int]
    MEAN_LATENCY_S_FIELD_NUMBER: _ClassVar[int]
    QUEUEING_S_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_RPS_FIELD_NUMBER: _ClassVar[int]
    total: float
    latency_s: float
    ttft_s: float
    bottleneck_s: float
    imbalance: float
    privacy_penalty: float
    feasible: bool
    reason: str
    node_utilization: _containers.ScalarMap[str, float]
    mean_latency_s: float
    queueing_s: float
    capacity_rps: float
    def __init__(self, total: _Optional[float] = ..., latency_s: _Optional[float] = ..., ttft_s: _Optional[float] = ..., bottleneck_s: _Optional[float] = ..., imbalance: _Optional[float] = ..., privacy_penalty: _Optional[float] = ..., feasible: _Optional[bool] = ..., reason: _Optional[str] = ..., node_utilization: _Optional[_Mapping[str, float]] = ..., mean_latency_s: _Optional[float] = ..., queueing_s: _Optional[float] = ..., capacity_rps: _Optional[float] = ...) -> None: ...
