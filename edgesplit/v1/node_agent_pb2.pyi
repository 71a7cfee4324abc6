import datetime

from edgesplit.v1 import common_pb2 as _common_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.rpc import code_pb2 as _code_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RolloutAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROLLOUT_ACTION_UNSPECIFIED: _ClassVar[RolloutAction]
    ROLLOUT_ACTION_COMMIT: _ClassVar[RolloutAction]
    ROLLOUT_ACTION_ABORT: _ClassVar[RolloutAction]
ROLLOUT_ACTION_UNSPECIFIED: RolloutAction
ROLLOUT_ACTION_COMMIT: RolloutAction
ROLLOUT_ACTION_ABORT: RolloutAction

class SignedEnvelope(_message.Message):
    __slots__ = ("payload", "signature", "key_id")
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    payload: bytes
    signature: bytes
    key_id: str
    def __init__(self, payload: _Optional[bytes] = ..., signature: _Optional[bytes] = ..., key_id: _Optional[str] = ...) -> None: ...

class ShardRef(_message.Message):
    __slots__ = ("name", "sha256", "size_bytes", "wrapped_key")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    WRAPPED_KEY_FIELD_NUMBER: _ClassVar[int]
    name: str
    sha256: str
    size_bytes: int
    wrapped_key: bytes
    def __init__(self, name: _Optional[str] = ..., sha256: _Optional[str] = ..., size_bytes: _Optional[int] = ..., wrapped_key: _Optional[bytes] = ...) -> None: ...

class Peer(_message.Message):
    __slots__ = ("node_id", "address", "x25519_public")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    X25519_PUBLIC_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    address: str
    x25519_public: bytes
    def __init__(self, node_id: _Optional[str] = ..., address: _Optional[str] = ..., x25519_public: _Optional[bytes] = ...) -> None: ...

class RouteSegment(_message.Message):
    __slots__ = ("entry", "segment", "hop", "prev_node", "next_node")
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    HOP_FIELD_NUMBER: _ClassVar[int]
    PREV_NODE_FIELD_NUMBER: _ClassVar[int]
    NEXT_NODE_FIELD_NUMBER: _ClassVar[int]
    entry: str
    segment: _common_pb2.Segment
    hop: int
    prev_node: str
    next_node: str
    def __init__(self, entry: _Optional[str] = ..., segment: _Optional[_Union[_common_pb2.Segment, _Mapping]] = ..., hop: _Optional[int] = ..., prev_node: _Optional[str] = ..., next_node: _Optional[str] = ...) -> None: ...

class Assignment(_message.Message):
    __slots__ = ("node_id", "epoch", "expires_at", "model_digest", "segments", "shards", "peers", "plan", "wire_dtype", "trusted_nodes", "privacy_depth")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    MODEL_DIGEST_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    PEERS_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    WIRE_DTYPE_FIELD_NUMBER: _ClassVar[int]
    TRUSTED_NODES_FIELD_NUMBER: _ClassVar[int]
    PRIVACY_DEPTH_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    epoch: int
    expires_at: _timestamp_pb2.Timestamp
    model_digest: str
    segments: _containers.RepeatedCompositeFieldContainer[RouteSegment]
    shards: _containers.RepeatedCompositeFieldContainer[ShardRef]
    peers: _containers.RepeatedCompositeFieldContainer[Peer]
    plan: _common_pb2.Plan
    wire_dtype: _common_pb2.WireDtype
    trusted_nodes: _containers.RepeatedScalarFieldContainer[str]
    privacy_depth: int
    def __init__(self, node_id: _Optional[str] = ..., epoch: _Optional[int] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., model_digest: _Optional[str] = ..., segments: _Optional[_Iterable[_Union[RouteSegment, _Mapping]]] = ..., shards: _Optional[_Iterable[_Union[ShardRef, _Mapping]]] = ..., peers: _Optional[_Iterable[_Union[Peer, _Mapping]]] = ..., plan: _Optional[_Union[_common_pb2.Plan, _Mapping]] = ..., wire_dtype: _Optional[_Union[_common_pb2.WireDtype, str]] = ..., trusted_nodes: _Optional[_Iterable[str]] = ..., privacy_depth: _Optional[int] = ...) -> None: ...

class PrepareRequest(_message.Message):
    __slots__ = ("assignment",)
    ASSIGNMENT_FIELD_NUMBER: _ClassVar[int]
    assignment: SignedEnvelope
    def __init__(self, assignment: _Optional[_Union[SignedEnvelope, _Mapping]] = ...) -> None: ...

class PrepareResponse(_message.Message):
    __slots__ = ("epoch", "duplicate", "shards_fetched", "shards_cached")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    SHARDS_FETCHED_FIELD_NUMBER: _ClassVar[int]
    SHARDS_CACHED_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    duplicate: bool
    shards_fetched: int
    shards_cached: int
    def __init__(self, epoch: _Optional[int] = ..., duplicate: _Optional[bool] = ..., shards_fetched: _Optional[int] = ..., shards_cached: _Optional[int] = ...) -> None: ...

class RolloutDecision(_message.Message):
    __slots__ = ("node_id", "epoch", "assignment_digest", "action", "expires_at_ms")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENT_DIGEST_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    epoch: int
    assignment_digest: bytes
    action: RolloutAction
    expires_at_ms: int
    def __init__(self, node_id: _Optional[str] = ..., epoch: _Optional[int] = ..., assignment_digest: _Optional[bytes] = ..., action: _Optional[_Union[RolloutAction, str]] = ..., expires_at_ms: _Optional[int] = ...) -> None: ...

class CommitRequest(_message.Message):
    __slots__ = ("epoch", "decision")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    decision: SignedEnvelope
    def __init__(self, epoch: _Optional[int] = ..., decision: _Optional[_Union[SignedEnvelope, _Mapping]] = ...) -> None: ...

class CommitResponse(_message.Message):
    __slots__ = ("epoch", "duplicate")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    duplicate: bool
    def __init__(self, epoch: _Optional[int] = ..., duplicate: _Optional[bool] = ...) -> None: ...

class AbortRequest(_message.Message):
    __slots__ = ("epoch", "decision")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    decision: SignedEnvelope
    def __init__(self, epoch: _Optional[int] = ..., decision: _Optional[_Union[SignedEnvelope, _Mapping]] = ...) -> None: ...

class AbortResponse(_message.Message):
    __slots__ = ("committed_epoch",)
    COMMITTED_EPOCH_FIELD_NUMBER: _ClassVar[int]
    committed_epoch: int
    def __init__(self, committed_epoch: _Optional[int] = ...) -> None: ...

class FrameHeader(_message.Message):
    __slots__ = ("session_id", "step", "hop", "epoch", "src", "dst", "shape", "dtype", "chunk", "chunks", "entry", "start_pos")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    HOP_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    SRC_FIELD_NUMBER: _ClassVar[int]
    DST_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    START_POS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    step: int
    hop: int
    epoch: int
    src: str
    dst: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    dtype: str
    chunk: int
    chunks: int
    entry: str
    start_pos: int
    def __init__(self, session_id: _Optional[str] = ..., step: _Optional[int] = ..., hop: _Optional[int] = ..., epoch: _Optional[int] = ..., src: _Optional[str] = ..., dst: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., dtype: _Optional[str] = ..., chunk: _Optional[int] = ..., chunks: _Optional[int] = ..., entry: _Optional[str] = ..., start_pos: _Optional[int] = ...) -> None: ...

class Frame(_message.Message):
    __slots__ = ("header", "nonce", "ciphertext")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXT_FIELD_NUMBER: _ClassVar[int]
    header: FrameHeader
    nonce: bytes
    ciphertext: bytes
    def __init__(self, header: _Optional[_Union[FrameHeader, _Mapping]] = ..., nonce: _Optional[bytes] = ..., ciphertext: _Optional[bytes] = ...) -> None: ...

class StepFailure(_message.Message):
    __slots__ = ("session_id", "step", "epoch", "reporter", "failed_node", "code", "detail")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    REPORTER_FIELD_NUMBER: _ClassVar[int]
    FAILED_NODE_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    step: int
    epoch: int
    reporter: str
    failed_node: str
    code: _code_pb2.Code
    detail: str
    def __init__(self, session_id: _Optional[str] = ..., step: _Optional[int] = ..., epoch: _Optional[int] = ..., reporter: _Optional[str] = ..., failed_node: _Optional[str] = ..., code: _Optional[_Union[_code_pb2.Code, str]] = ..., detail: _Optional[str] = ...) -> None: ...

class EndSession(_message.Message):
    __slots__ = ("session_id", "epoch")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    epoch: int
    def __init__(self, session_id: _Optional[str] = ..., epoch: _Optional[int] = ...) -> None: ...

class BatchFrame(_message.Message):
    __slots__ = ("headers", "nonce", "ciphertext")
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXT_FIELD_NUMBER: _ClassVar[int]
    headers: _containers.RepeatedCompositeFieldContainer[FrameHeader]
    nonce: bytes
    ciphertext: bytes
    def __init__(self, headers: _Optional[_Iterable[_Union[FrameHeader, _Mapping]]] = ..., nonce: _Optional[bytes] = ..., ciphertext: _Optional[bytes] = ...) -> None: ...

class LinkMessage(_message.Message):
    __slots__ = ("seq", "frame", "end_session", "step_failure", "batch_frame", "ack_now")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    END_SESSION_FIELD_NUMBER: _ClassVar[int]
    STEP_FAILURE_FIELD_NUMBER: _ClassVar[int]
    BATCH_FRAME_FIELD_NUMBER: _ClassVar[int]
    ACK_NOW_FIELD_NUMBER: _ClassVar[int]
    seq: int
    frame: Frame
    end_session: EndSession
    step_failure: StepFailure
    batch_frame: BatchFrame
    ack_now: bool
    def __init__(self, seq: _Optional[int] = ..., frame: _Optional[_Union[Frame, _Mapping]] = ..., end_session: _Optional[_Union[EndSession, _Mapping]] = ..., step_failure: _Optional[_Union[StepFailure, _Mapping]] = ..., batch_frame: _Optional[_Union[BatchFrame, _Mapping]] = ..., ack_now: _Optional[bool] = ...) -> None: ...

class LinkAck(_message.Message):
    __slots__ = ("seq", "code", "detail")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    seq: int
    code: _code_pb2.Code
    detail: str
    def __init__(self, seq: _Optional[int] = ..., code: _Optional[_Union[_code_pb2.Code, str]] = ..., detail: _Optional[str] = ...) -> None: ...

class LinkHello(_message.Message):
    __slots__ = ("node_id", "salt")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    SALT_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    salt: bytes
    def __init__(self, node_id: _Optional[str] = ..., salt: _Optional[bytes] = ...) -> None: ...

class GetInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetInfoResponse(_message.Message):
    __slots__ = ("node_id", "x25519_public", "committed_epoch", "prepared_epoch", "segments", "sessions", "kv_cache_bytes", "device")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    X25519_PUBLIC_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_EPOCH_FIELD_NUMBER: _ClassVar[int]
    PREPARED_EPOCH_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    KV_CACHE_BYTES_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    x25519_public: bytes
    committed_epoch: int
    prepared_epoch: int
    segments: _containers.RepeatedCompositeFieldContainer[RouteSegment]
    sessions: int
    kv_cache_bytes: int
    device: str
    def __init__(self, node_id: _Optional[str] = ..., x25519_public: _Optional[bytes] = ..., committed_epoch: _Optional[int] = ..., prepared_epoch: _Optional[int] = ..., segments: _Optional[_Iterable[_Union[RouteSegment, _Mapping]]] = ..., sessions: _Optional[int] = ..., kv_cache_bytes: _Optional[int] = ..., device: _Optional[str] = ...) -> None: ...

class ProbeRequest(_message.Message):
    __slots__ = ("src", "payload")
    SRC_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    src: str
    payload: bytes
    def __init__(self, src: _Optional[str] = ..., payload: _Optional[bytes] = ...) -> None: ...

class ProbeResponse(_message.Message):
    __slots__ = ("received_bytes",)
    RECEIVED_BYTES_FIELD_NUMBER: _ClassVar[int]
    received_bytes: int
    def __init__(self, received_bytes: _Optional[int] = ...) -> None: ...
