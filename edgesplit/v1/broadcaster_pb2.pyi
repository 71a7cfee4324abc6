import datetime

from edgesplit.v1 import common_pb2 as _common_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.rpc import code_pb2 as _code_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RolloutState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROLLOUT_STATE_UNSPECIFIED: _ClassVar[RolloutState]
    ROLLOUT_STATE_PREPARED: _ClassVar[RolloutState]
    ROLLOUT_STATE_COMMITTED: _ClassVar[RolloutState]
    ROLLOUT_STATE_ABORTED: _ClassVar[RolloutState]
    ROLLOUT_STATE_FAILED: _ClassVar[RolloutState]
    ROLLOUT_STATE_TIMEOUT: _ClassVar[RolloutState]
ROLLOUT_STATE_UNSPECIFIED: RolloutState
ROLLOUT_STATE_PREPARED: RolloutState
ROLLOUT_STATE_COMMITTED: RolloutState
ROLLOUT_STATE_ABORTED: RolloutState
ROLLOUT_STATE_FAILED: RolloutState
ROLLOUT_STATE_TIMEOUT: RolloutState

class ApplyRequest(_message.Message):
    __slots__ = ("plan", "prepare_timeout", "wire_dtype")
    PLAN_FIELD_NUMBER: _ClassVar[int]
    PREPARE_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    WIRE_DTYPE_FIELD_NUMBER: _ClassVar[int]
    plan: _common_pb2.Plan
    prepare_timeout: _duration_pb2.Duration
    wire_dtype: _common_pb2.WireDtype
    def __init__(self, plan: _Optional[_Union[_common_pb2.Plan, _Mapping]] = ..., prepare_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., wire_dtype: _Optional[_Union[_common_pb2.WireDtype, str]] = ...) -> None: ...

class NodeOutcome(_message.Message):
    __slots__ = ("node_id", "state", "code", "detail", "prepare", "shards_fetched", "shards_cached")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    PREPARE_FIELD_NUMBER: _ClassVar[int]
    SHARDS_FETCHED_FIELD_NUMBER: _ClassVar[int]
    SHARDS_CACHED_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    state: RolloutState
    code: _code_pb2.Code
    detail: str
    prepare: _duration_pb2.Duration
    shards_fetched: int
    shards_cached: int
    def __init__(self, node_id: _Optional[str] = ..., state: _Optional[_Union[RolloutState, str]] = ..., code: _Optional[_Union[_code_pb2.Code, str]] = ..., detail: _Optional[str] = ..., prepare: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., shards_fetched: _Optional[int] = ..., shards_cached: _Optional[int] = ...) -> None: ...

class ApplyResponse(_message.Message):
    __slots__ = ("committed", "epoch", "nodes", "elapsed", "duplicate")
    COMMITTED_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    committed: bool
    epoch: int
    nodes: _containers.RepeatedCompositeFieldContainer[NodeOutcome]
    elapsed: _duration_pb2.Duration
    duplicate: bool
    def __init__(self, committed: _Optional[bool] = ..., epoch: _Optional[int] = ..., nodes: _Optional[_Iterable[_Union[NodeOutcome, _Mapping]]] = ..., elapsed: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., duplicate: _Optional[bool] = ...) -> None: ...

class FetchShardRequest(_message.Message):
    __slots__ = ("sha256", "node_id", "offset")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    node_id: str
    offset: int
    def __init__(self, sha256: _Optional[str] = ..., node_id: _Optional[str] = ..., offset: _Optional[int] = ...) -> None: ...

class FetchShardResponse(_message.Message):
    __slots__ = ("offset", "data", "total_bytes")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    offset: int
    data: bytes
    total_bytes: int
    def __init__(self, offset: _Optional[int] = ..., data: _Optional[bytes] = ..., total_bytes: _Optional[int] = ...) -> None: ...

class ListShardsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ShardInfo(_message.Message):
    __slots__ = ("name", "sha256", "size_bytes", "model_digest")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MODEL_DIGEST_FIELD_NUMBER: _ClassVar[int]
    name: str
    sha256: str
    size_bytes: int
    model_digest: str
    def __init__(self, name: _Optional[str] = ..., sha256: _Optional[str] = ..., size_bytes: _Optional[int] = ..., model_digest: _Optional[str] = ...) -> None: ...

class ListShardsResponse(_message.Message):
    __slots__ = ("shards",)
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    shards: _containers.RepeatedCompositeFieldContainer[ShardInfo]
    def __init__(self, shards: _Optional[_Iterable[_Union[ShardInfo, _Mapping]]] = ...) -> None: ...

class CurrentRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CurrentResponse(_message.Message):
    __slots__ = ("plan", "last_epoch")
    PLAN_FIELD_NUMBER: _ClassVar[int]
    LAST_EPOCH_FIELD_NUMBER: _ClassVar[int]
    plan: _common_pb2.Plan
    last_epoch: int
    def __init__(self, plan: _Optional[_Union[_common_pb2.Plan, _Mapping]] = ..., last_epoch: _Optional[int] = ...) -> None: ...
