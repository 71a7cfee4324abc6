from edgesplit.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Decision(_message.Message):
    __slots__ = ("id", "at", "triggers", "action", "old_cost", "new_cost", "outcome", "trigger_to_commit_s", "old_epoch", "new_epoch", "detail")
    ID_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    TRIGGERS_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    OLD_COST_FIELD_NUMBER: _ClassVar[int]
    NEW_COST_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_TO_COMMIT_S_FIELD_NUMBER: _ClassVar[int]
    OLD_EPOCH_FIELD_NUMBER: _ClassVar[int]
    NEW_EPOCH_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    id: int
    at: float
    triggers: _containers.RepeatedScalarFieldContainer[str]
    action: str
    old_cost: _common_pb2.CostBreakdown
    new_cost: _common_pb2.CostBreakdown
    outcome: str
    trigger_to_commit_s: float
    old_epoch: int
    new_epoch: int
    detail: str
    def __init__(self, id: _Optional[int] = ..., at: _Optional[float] = ..., triggers: _Optional[_Iterable[str]] = ..., action: _Optional[str] = ..., old_cost: _Optional[_Union[_common_pb2.CostBreakdown, _Mapping]] = ..., new_cost: _Optional[_Union[_common_pb2.CostBreakdown, _Mapping]] = ..., outcome: _Optional[str] = ..., trigger_to_commit_s: _Optional[float] = ..., old_epoch: _Optional[int] = ..., new_epoch: _Optional[int] = ..., detail: _Optional[str] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ("plan", "cost", "last_reconfigured_at", "cooldown_left_s", "last_decision", "reconfigurations")
    class ReconfigurationsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    PLAN_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    LAST_RECONFIGURED_AT_FIELD_NUMBER: _ClassVar[int]
    COOLDOWN_LEFT_S_FIELD_NUMBER: _ClassVar[int]
    LAST_DECISION_FIELD_NUMBER: _ClassVar[int]
    RECONFIGURATIONS_FIELD_NUMBER: _ClassVar[int]
    plan: _common_pb2.Plan
    cost: _common_pb2.CostBreakdown
    last_reconfigured_at: float
    cooldown_left_s: float
    last_decision: Decision
    reconfigurations: _containers.ScalarMap[str, int]
    def __init__(self, plan: _Optional[_Union[_common_pb2.Plan, _Mapping]] = ..., cost: _Optional[_Union[_common_pb2.CostBreakdown, _Mapping]] = ..., last_reconfigured_at: _Optional[float] = ..., cooldown_left_s: _Optional[float] = ..., last_decision: _Optional[_Union[Decision, _Mapping]] = ..., reconfigurations: _Optional[_Mapping[str, int]] = ...) -> None: ...

class HistoryRequest(_message.Message):
    __slots__ = ("limit", "before_id")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    BEFORE_ID_FIELD_NUMBER: _ClassVar[int]
    limit: int
    before_id: int
    def __init__(self, limit: _Optional[int] = ..., before_id: _Optional[int] = ...) -> None: ...

class HistoryResponse(_message.Message):
    __slots__ = ("decisions",)
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    decisions: _containers.RepeatedCompositeFieldContainer[Decision]
    def __init__(self, decisions: _Optional[_Iterable[_Union[Decision, _Mapping]]] = ...) -> None: ...

class EnsureRouteRequest(_message.Message):
    __slots__ = ("entry", "privacy")
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    PRIVACY_FIELD_NUMBER: _ClassVar[int]
    entry: str
    privacy: _common_pb2.Privacy
    def __init__(self, entry: _Optional[str] = ..., privacy: _Optional[_Union[_common_pb2.Privacy, str]] = ...) -> None: ...

class EnsureRouteResponse(_message.Message):
    __slots__ = ("epoch", "reconfigured")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    RECONFIGURED_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    reconfigured: bool
    def __init__(self, epoch: _Optional[int] = ..., reconfigured: _Optional[bool] = ...) -> None: ...
