import datetime

from edgesplit.v1 import common_pb2 as _common_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LinkSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LINK_SOURCE_UNSPECIFIED: _ClassVar[LinkSource]
    LINK_SOURCE_PASSIVE: _ClassVar[LinkSource]
    LINK_SOURCE_PROBE: _ClassVar[LinkSource]

class ReportReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REPORT_REASON_UNSPECIFIED: _ClassVar[ReportReason]
    REPORT_REASON_STALE: _ClassVar[ReportReason]
    REPORT_REASON_NOT_ENROLLED: _ClassVar[ReportReason]
    REPORT_REASON_IDENTITY_MISMATCH: _ClassVar[ReportReason]
    REPORT_REASON_MALFORMED: _ClassVar[ReportReason]
    REPORT_REASON_ENROLMENT_FULL: _ClassVar[ReportReason]
LINK_SOURCE_UNSPECIFIED: LinkSource
LINK_SOURCE_PASSIVE: LinkSource
LINK_SOURCE_PROBE: LinkSource
REPORT_REASON_UNSPECIFIED: ReportReason
REPORT_REASON_STALE: ReportReason
REPORT_REASON_NOT_ENROLLED: ReportReason
REPORT_REASON_IDENTITY_MISMATCH: ReportReason
REPORT_REASON_MALFORMED: ReportReason
REPORT_REASON_ENROLMENT_FULL: ReportReason

class LayerTiming(_message.Message):
    __slots__ = ("layer", "prefill_s_per_token", "decode_s_per_token")
    LAYER_FIELD_NUMBER: _ClassVar[int]
    PREFILL_S_PER_TOKEN_FIELD_NUMBER: _ClassVar[int]
    DECODE_S_PER_TOKEN_FIELD_NUMBER: _ClassVar[int]
    layer: _common_pb2.LayerRef
    prefill_s_per_token: float
    decode_s_per_token: float
    def __init__(self, layer: _Optional[_Union[_common_pb2.LayerRef, _Mapping]] = ..., prefill_s_per_token: _Optional[float] = ..., decode_s_per_token: _Optional[float] = ...) -> None: ...

class LinkObservation(_message.Message):
    __slots__ = ("peer", "rtt", "bandwidth_bps", "source")
    PEER_FIELD_NUMBER: _ClassVar[int]
    RTT_FIELD_NUMBER: _ClassVar[int]
    BANDWIDTH_BPS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    peer: str
    rtt: _duration_pb2.Duration
    bandwidth_bps: float
    source: LinkSource
    def __init__(self, peer: _Optional[str] = ..., rtt: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., bandwidth_bps: _Optional[float] = ..., source: _Optional[_Union[LinkSource, str]] = ...) -> None: ...

class RequestSample(_message.Message):
    __slots__ = ("ttft", "steps", "sla_met")
    TTFT_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    SLA_MET_FIELD_NUMBER: _ClassVar[int]
    ttft: _duration_pb2.Duration
    steps: _containers.RepeatedCompositeFieldContainer[_duration_pb2.Duration]
    sla_met: bool
    def __init__(self, ttft: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., steps: _Optional[_Iterable[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]]] = ..., sla_met: _Optional[bool] = ...) -> None: ...

class ReportRequest(_message.Message):
    __slots__ = ("node_id", "seq", "sent_at", "cpu_utilization", "memory_used_bytes", "memory_total_bytes", "has_gpu", "gpu_utilization", "gpu_memory_used_bytes", "gpu_memory_total_bytes", "queue_depth", "active_sessions", "layers", "bytes_sent", "requests", "links", "committed_epoch", "incarnation", "compute_busy")
    class BytesSentEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    SENT_AT_FIELD_NUMBER: _ClassVar[int]
    CPU_UTILIZATION_FIELD_NUMBER: _ClassVar[int]
    MEMORY_USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    HAS_GPU_FIELD_NUMBER: _ClassVar[int]
    GPU_UTILIZATION_FIELD_NUMBER: _ClassVar[int]
    GPU_MEMORY_USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    GPU_MEMORY_TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    QUEUE_DEPTH_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    BYTES_SENT_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    LINKS_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_EPOCH_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_BUSY_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    seq: int
    sent_at: _timestamp_pb2.Timestamp
    cpu_utilization: float
    memory_used_bytes: int
    memory_total_bytes: int
    has_gpu: bool
    gpu_utilization: float
    gpu_memory_used_bytes: int
    gpu_memory_total_bytes: int
    queue_depth: int
    active_sessions: int
    layers: _containers.RepeatedCompositeFieldContainer[LayerTiming]
    bytes_sent: _containers.ScalarMap[str, int]
    requests: _containers.RepeatedCompositeFieldContainer[RequestSample]
    links: _containers.RepeatedCompositeFieldContainer[LinkObservation]
    committed_epoch: int
    incarnation: int
    compute_busy: _duration_pb2.Duration
    def __init__(self, node_id: _Optional[str] = ..., seq: _Optional[int] = ..., sent_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., cpu_utilization: _Optional[float] = ..., memory_used_bytes: _Optional[int] = ..., memory_total_bytes: _Optional[int] = ..., has_gpu: _Optional[bool] = ..., gpu_utilization: _Optional[float] = ..., gpu_memory_used_bytes: _Optional[int] = ..., gpu_memory_total_bytes: _Optional[int] = ..., queue_depth: _Optional[int] = ..., active_sessions: _Optional[int] = ..., layers: _Optional[_Iterable[_Union[LayerTiming, _Mapping]]] = ..., bytes_sent: _Optional[_Mapping[str, int]] = ..., requests: _Optional[_Iterable[_Union[RequestSample, _Mapping]]] = ..., links: _Optional[_Iterable[_Union[LinkObservation, _Mapping]]] = ..., committed_epoch: _Optional[int] = ..., incarnation: _Optional[int] = ..., compute_busy: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class ReportResponse(_message.Message):
    __slots__ = ("seq", "accepted", "reason", "probe_targets")
    class ProbeTargetsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SEQ_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    PROBE_TARGETS_FIELD_NUMBER: _ClassVar[int]
    seq: int
    accepted: bool
    reason: ReportReason
    probe_targets: _containers.ScalarMap[str, str]
    def __init__(self, seq: _Optional[int] = ..., accepted: _Optional[bool] = ..., reason: _Optional[_Union[ReportReason, str]] = ..., probe_targets: _Optional[_Mapping[str, str]] = ...) -> None: ...

class NodeView(_message.Message):
    __slots__ = ("state", "last_seen_age", "cpu_utilization", "gpu_utilization", "memory_used_bytes", "queue_depth", "active_sessions", "layers", "committed_epoch", "reports", "memory_total_bytes", "has_gpu", "gpu_memory_used_bytes", "gpu_memory_total_bytes", "own_load", "hop_bytes_per_s", "active_sessions_avg", "decode_background")
    class HopBytesPerSEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    STATE_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_AGE_FIELD_NUMBER: _ClassVar[int]
    CPU_UTILIZATION_FIELD_NUMBER: _ClassVar[int]
    GPU_UTILIZATION_FIELD_NUMBER: _ClassVar[int]
    MEMORY_USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    QUEUE_DEPTH_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_EPOCH_FIELD_NUMBER: _ClassVar[int]
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    HAS_GPU_FIELD_NUMBER: _ClassVar[int]
    GPU_MEMORY_USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    GPU_MEMORY_TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    OWN_LOAD_FIELD_NUMBER: _ClassVar[int]
    HOP_BYTES_PER_S_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_SESSIONS_AVG_FIELD_NUMBER: _ClassVar[int]
    DECODE_BACKGROUND_FIELD_NUMBER: _ClassVar[int]
    state: _common_pb2.NodeState
    last_seen_age: _duration_pb2.Duration
    cpu_utilization: float
    gpu_utilization: float
    memory_used_bytes: int
    queue_depth: float
    active_sessions: int
    layers: _containers.RepeatedCompositeFieldContainer[LayerTiming]
    committed_epoch: int
    reports: int
    memory_total_bytes: int
    has_gpu: bool
    gpu_memory_used_bytes: int
    gpu_memory_total_bytes: int
    own_load: float
    hop_bytes_per_s: _containers.ScalarMap[str, float]
    active_sessions_avg: float
    decode_background: float
    def __init__(self, state: _Optional[_Union[_common_pb2.NodeState, _Mapping]] = ..., last_seen_age: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., cpu_utilization: _Optional[float] = ..., gpu_utilization: _Optional[float] = ..., memory_used_bytes: _Optional[int] = ..., queue_depth: _Optional[float] = ..., active_sessions: _Optional[int] = ..., layers: _Optional[_Iterable[_Union[LayerTiming, _Mapping]]] = ..., committed_epoch: _Optional[int] = ..., reports: _Optional[int] = ..., memory_total_bytes: _Optional[int] = ..., has_gpu: _Optional[bool] = ..., gpu_memory_used_bytes: _Optional[int] = ..., gpu_memory_total_bytes: _Optional[int] = ..., own_load: _Optional[float] = ..., hop_bytes_per_s: _Optional[_Mapping[str, float]] = ..., active_sessions_avg: _Optional[float] = ..., decode_background: _Optional[float] = ...) -> None: ...

class LinkView(_message.Message):
    __slots__ = ("src", "dst", "rtt", "bandwidth_bps", "source", "age", "samples")
    SRC_FIELD_NUMBER: _ClassVar[int]
    DST_FIELD_NUMBER: _ClassVar[int]
    RTT_FIELD_NUMBER: _ClassVar[int]
    BANDWIDTH_BPS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    AGE_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    src: str
    dst: str
    rtt: _duration_pb2.Duration
    bandwidth_bps: float
    source: LinkSource
    age: _duration_pb2.Duration
    samples: int
    def __init__(self, src: _Optional[str] = ..., dst: _Optional[str] = ..., rtt: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., bandwidth_bps: _Optional[float] = ..., source: _Optional[_Union[LinkSource, str]] = ..., age: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., samples: _Optional[int] = ...) -> None: ...

class EnvironmentState(_message.Message):
    __slots__ = ("at", "version", "nodes", "links", "latency_ewma", "ttft_ewma", "sla_hit_rate", "window_requests", "profile", "link_views", "requests_total", "sla_hits_total", "reports_accepted", "reports_stale", "reports_refused", "report_interval", "dead_after")
    class ReportsRefusedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    AT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    LINKS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_EWMA_FIELD_NUMBER: _ClassVar[int]
    TTFT_EWMA_FIELD_NUMBER: _ClassVar[int]
    SLA_HIT_RATE_FIELD_NUMBER: _ClassVar[int]
    WINDOW_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    LINK_VIEWS_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    SLA_HITS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    REPORTS_ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REPORTS_STALE_FIELD_NUMBER: _ClassVar[int]
    REPORTS_REFUSED_FIELD_NUMBER: _ClassVar[int]
    REPORT_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    DEAD_AFTER_FIELD_NUMBER: _ClassVar[int]
    at: _timestamp_pb2.Timestamp
    version: int
    nodes: _containers.RepeatedCompositeFieldContainer[NodeView]
    links: _containers.RepeatedCompositeFieldContainer[_common_pb2.LinkState]
    latency_ewma: _duration_pb2.Duration
    ttft_ewma: _duration_pb2.Duration
    sla_hit_rate: float
    window_requests: int
    profile: _common_pb2.ModelProfile
    link_views: _containers.RepeatedCompositeFieldContainer[LinkView]
    requests_total: int
    sla_hits_total: int
    reports_accepted: int
    reports_stale: int
    reports_refused: _containers.ScalarMap[str, int]
    report_interval: _duration_pb2.Duration
    dead_after: _duration_pb2.Duration
    def __init__(self, at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., version: _Optional[int] = ..., nodes: _Optional[_Iterable[_Union[NodeView, _Mapping]]] = ..., links: _Optional[_Iterable[_Union[_common_pb2.LinkState, _Mapping]]] = ..., latency_ewma: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., ttft_ewma: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., sla_hit_rate: _Optional[float] = ..., window_requests: _Optional[int] = ..., profile: _Optional[_Union[_common_pb2.ModelProfile, _Mapping]] = ..., link_views: _Optional[_Iterable[_Union[LinkView, _Mapping]]] = ..., requests_total: _Optional[int] = ..., sla_hits_total: _Optional[int] = ..., reports_accepted: _Optional[int] = ..., reports_stale: _Optional[int] = ..., reports_refused: _Optional[_Mapping[str, int]] = ..., report_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., dead_after: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class GetStateRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetStateResponse(_message.Message):
    __slots__ = ("state",)
    STATE_FIELD_NUMBER: _ClassVar[int]
    state: EnvironmentState
    def __init__(self, state: _Optional[_Union[EnvironmentState, _Mapping]] = ...) -> None: ...

class WatchStateRequest(_message.Message):
    __slots__ = ("min_interval",)
    MIN_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    min_interval: _duration_pb2.Duration
    def __init__(self, min_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class WatchStateResponse(_message.Message):
    __slots__ = ("state",)
    STATE_FIELD_NUMBER: _ClassVar[int]
    state: EnvironmentState
    def __init__(self, state: _Optional[_Union[EnvironmentState, _Mapping]] = ...) -> None: ...
