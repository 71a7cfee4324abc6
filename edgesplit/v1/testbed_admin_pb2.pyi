from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Conditions(_message.Message):
    __slots__ = ("compute_slowdown", "link_delay_s", "link_bandwidth_bps", "link_down", "background_utilization")
    class LinkDelaySEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class LinkBandwidthBpsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class LinkDownEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bool
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bool] = ...) -> None: ...
    COMPUTE_SLOWDOWN_FIELD_NUMBER: _ClassVar[int]
    LINK_DELAY_S_FIELD_NUMBER: _ClassVar[int]
    LINK_BANDWIDTH_BPS_FIELD_NUMBER: _ClassVar[int]
    LINK_DOWN_FIELD_NUMBER: _ClassVar[int]
    BACKGROUND_UTILIZATION_FIELD_NUMBER: _ClassVar[int]
    compute_slowdown: float
    link_delay_s: _containers.ScalarMap[str, float]
    link_bandwidth_bps: _containers.ScalarMap[str, float]
    link_down: _containers.ScalarMap[str, bool]
    background_utilization: float
    def __init__(self, compute_slowdown: _Optional[float] = ..., link_delay_s: _Optional[_Mapping[str, float]] = ..., link_bandwidth_bps: _Optional[_Mapping[str, float]] = ..., link_down: _Optional[_Mapping[str, bool]] = ..., background_utilization: _Optional[float] = ...) -> None: ...

class SetConditionsRequest(_message.Message):
    __slots__ = ("conditions", "replace")
    CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    REPLACE_FIELD_NUMBER: _ClassVar[int]
    conditions: Conditions
    replace: bool
    def __init__(self, conditions: _Optional[_Union[Conditions, _Mapping]] = ..., replace: _Optional[bool] = ...) -> None: ...

class SetConditionsResponse(_message.Message):
    __slots__ = ("conditions",)
    CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    conditions: Conditions
    def __init__(self, conditions: _Optional[_Union[Conditions, _Mapping]] = ...) -> None: ...

class GetConditionsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetConditionsResponse(_message.Message):
    __slots__ = ("conditions",)
    CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    conditions: Conditions
    def __init__(self, conditions: _Optional[_Union[Conditions, _Mapping]] = ...) -> None: ...
