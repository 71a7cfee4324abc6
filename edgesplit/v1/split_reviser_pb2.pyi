import datetime

from edgesplit.v1 import common_pb2 as _common_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReviseRequest(_message.Message):
    __slots__ = ("state", "profile", "workload", "current", "mode", "weights", "entries", "epoch")
    STATE_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    WORKLOAD_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    state: _common_pb2.ClusterState
    profile: _common_pb2.ModelProfile
    workload: _common_pb2.Workload
    current: _common_pb2.Plan
    mode: _common_pb2.PlanMode
    weights: _common_pb2.ObjectiveWeights
    entries: _containers.RepeatedScalarFieldContainer[str]
    epoch: int
    def __init__(self, state: _Optional[_Union[_common_pb2.ClusterState, _Mapping]] = ..., profile: _Optional[_Union[_common_pb2.ModelProfile, _Mapping]] = ..., workload: _Optional[_Union[_common_pb2.Workload, _Mapping]] = ..., current: _Optional[_Union[_common_pb2.Plan, _Mapping]] = ..., mode: _Optional[_Union[_common_pb2.PlanMode, str]] = ..., weights: _Optional[_Union[_common_pb2.ObjectiveWeights, _Mapping]] = ..., entries: _Optional[_Iterable[str]] = ..., epoch: _Optional[int] = ...) -> None: ...

class SolverStats(_message.Message):
    __slots__ = ("method", "solve", "optimal", "gap", "nodes", "layers")
    METHOD_FIELD_NUMBER: _ClassVar[int]
    SOLVE_FIELD_NUMBER: _ClassVar[int]
    OPTIMAL_FIELD_NUMBER: _ClassVar[int]
    GAP_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    method: str
    solve: _duration_pb2.Duration
    optimal: bool
    gap: float
    nodes: int
    layers: int
    def __init__(self, method: _Optional[str] = ..., solve: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., optimal: _Optional[bool] = ..., gap: _Optional[float] = ..., nodes: _Optional[int] = ..., layers: _Optional[int] = ...) -> None: ...

class ReviseResponse(_message.Message):
    __slots__ = ("feasible", "reason", "plan", "cost", "current_cost", "stats")
    FEASIBLE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    CURRENT_COST_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    feasible: bool
    reason: str
    plan: _common_pb2.Plan
    cost: _common_pb2.CostBreakdown
    current_cost: _common_pb2.CostBreakdown
    stats: SolverStats
    def __init__(self, feasible: _Optional[bool] = ..., reason: _Optional[str] = ..., plan: _Optional[_Union[_common_pb2.Plan, _Mapping]] = ..., cost: _Optional[_Union[_common_pb2.CostBreakdown, _Mapping]] = ..., current_cost: _Optional[_Union[_common_pb2.CostBreakdown, _Mapping]] = ..., stats: _Optional[_Union[SolverStats, _Mapping]] = ...) -> None: ...
