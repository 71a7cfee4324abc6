"""``core.frozen.maker`` builds the same frozen values as the dataclass constructor."""

from __future__ import annotations

import dataclasses

import pytest

from edgesplit.core.environment import LinkEnv, NodeEnv
from edgesplit.core.frozen import maker
from edgesplit.core.reports import LinkSource
from edgesplit.core.types import NodeId


def test_made_values_equal_constructed_ones_and_stay_frozen() -> None:
    args = (NodeId("a"), NodeId("b"), 0.012, 5e7, LinkSource.PROBE, 3.0, 4)
    made, built = maker(LinkEnv)(*args), LinkEnv(*args)
    assert made == built and hash(made) == hash(built) and type(made) is LinkEnv
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.rtt_s = 1.0  # type: ignore[misc]
    # Defaults and keywords as the constructor takes them.
    node = maker(NodeEnv)(node_id=NodeId("a"), alive=True, last_seen=None, reports=2)
    assert node == NodeEnv(NodeId("a"), True, None, reports=2)
    with pytest.raises(TypeError):
        maker(NodeEnv)(node_id=NodeId("a"))  # required fields stay required


def test_refuses_classes_whose_init_does_more() -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class Checked:
        x: int

        def __post_init__(self) -> None:
            if self.x < 0:
                raise ValueError("negative")

    @dataclasses.dataclass(slots=True)
    class Mutable:
        x: int

    @dataclasses.dataclass(frozen=True, slots=True)
    class Factory:
        xs: list[int] = dataclasses.field(default_factory=list)

    for cls in (Checked, Mutable, Factory):
        with pytest.raises(TypeError):
            maker(cls)
