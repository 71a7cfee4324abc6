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

class Trigger(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRIGGER_UNSPECIFIED: _ClassVar[Trigger]
    TRIGGER_LATENCY: _ClassVar[Trigger]
    TRIGGER_UTILIZATION: _ClassVar[Trigger]
    TRIGGER_BANDWIDTH: _ClassVar[Trigger]
    TRIGGER_PRIVACY: _ClassVar[Trigger]
    TRIGGER_FAILOVER: _ClassVar[Trigger]

class Action(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTION_UNSPECIFIED: _ClassVar[Action]
    ACTION_KEEP: _ClassVar[Action]
    ACTION_MIGRATE: _ClassVar[Action]
    ACTION_RESPLIT: _ClassVar[Action]

class Outcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTCOME_UNSPECIFIED: _ClassVar[Outcome]
    OUTCOME_COMMITTED: _ClassVar[Outcome]
    OUTCOME_ABORTED: _ClassVar[Outcome]
    OUTCOME_FAILED: _ClassVar[Outcome]
    OUTCOME_INFEASIBLE: _ClassVar[Outcome]
    OUTCOME_REJECTED_MARGIN: _ClassVar[Outcome]
TRIGGER_UNSPECIFIED: Trigger
TRIGGER_LATENCY: Trigger
TRIGGER_UTILIZATION: Trigger
TRIGGER_BANDWIDTH: Trigger
TRIGGER_PRIVACY: Trigger
TRIGGER_FAILOVER: Trigger
ACTION_UNSPECIFIED: Action
ACTION_KEEP: Action
ACTION_MIGRATE: Action
ACTION_RESPLIT: Action
OUTCOME_UNSPECIFIED: Outcome
OUTCOME_COMMITTED: Outcome
OUTCOME_ABORTED: Outcome
OUTCOME_FAILED: Outcome
OUTCOME_INFEASIBLE: Outcome
OUTCOME_REJECTED_MARGIN: Outcome

class Decision(_message.Message):
    __slots__ = ("id", "at", "triggers", "action", "old_cost", "new_cost", "outcome", "trigger_to_commit", "old_epoch", "new_epoch", "detail")
    ID_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    TRIGGERS_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    OLD_COST_FIELD_NUMBER: _ClassVar[int]
    NEW_COST_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_TO_COMMIT_FIELD_NUMBER: _ClassVar[int]
    OLD_EPOCH_FIELD_NUMBER: _ClassVar[int]
    NEW_EPOCH_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    id: int
    at: _timestamp_pb2.Timestamp
    triggers: _containers.RepeatedScalarFieldContainer[Trigger]
    action: Action
    old_cost: _common_pb2.CostBreakdown
    new_cost: _common_pb2.CostBreakdown
    outcome: Outcome
    trigger_to_commit: _duration_pb2.Duration
    old_epoch: int
    new_epoch: int
    detail: str
    def __init__(self, id: _Optional[int] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., triggers: _Optional[_Iterable[_Union[Trigger, str]]] = ..., action: _Optional[_Union[Action, str]] = ..., old_cost: _Optional[_Union[_common_pb2.CostBreakdown, _Mapping]] = ..., new_cost: _Optional[_Union[_common_pb2.CostBreakdown, _Mapping]] = ..., outcome: _Optional[_Union[Outcome, str]] = ..., trigger_to_commit: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., old_epoch: _Optional[int] = ..., new_epoch: _Optional[int] = ..., detail: _Optional[str] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ("plan", "cost", "last_reconfigured_at", "cooldown_left", "last_decision", "reconfigurations")
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
    COOLDOWN_LEFT_FIELD_NUMBER: _ClassVar[int]
    LAST_DECISION_FIELD_NUMBER: _ClassVar[int]
    RECONFIGURATIONS_FIELD_NUMBER: _ClassVar[int]
    plan: _common_pb2.Plan
    cost: _common_pb2.CostBreakdown
    last_reconfigured_at: _timestamp_pb2.Timestamp
    cooldown_left: _duration_pb2.Duration
    last_decision: Decision
    reconfigurations: _containers.ScalarMap[str, int]
    def __init__(self, plan: _Optional[_Union[_common_pb2.Plan, _Mapping]] = ..., cost: _Optional[_Union[_common_pb2.CostBreakdown, _Mapping]] = ..., last_reconfigured_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., cooldown_left: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., last_decision: _Optional[_Union[Decision, _Mapping]] = ..., reconfigurations: _Optional[_Mapping[str, int]] = ...) -> None: ...

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
