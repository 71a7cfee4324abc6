"""The static inventory of enrolled nodes.

What does not change while a node runs (trust, memory capacity, declared
speed, address, which entries trust it) is configured, not measured. It is
kept as ``NodeState`` values so the monitor only overlays what it measures
(liveness, utilisation, per-layer times) instead of copying fields across a
second, near-identical type.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from edgesplit.core.types import NodeId, NodeState


@dataclass(frozen=True, slots=True)
class NodeInventory:
    """Enrolled nodes in a fixed order (the order ``to_cluster_state`` keeps)."""

    nodes: tuple[NodeState, ...]
    _index: dict[NodeId, NodeState] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index = {n.node_id: n for n in self.nodes}
        if len(index) != len(self.nodes):
            raise ValueError("duplicate node id in inventory")
        object.__setattr__(self, "_index", index)

    @property
    def ids(self) -> tuple[NodeId, ...]:
        return tuple(n.node_id for n in self.nodes)

    @property
    def index(self) -> Mapping[NodeId, NodeState]:
        """Nodes by id (read-only view)."""
        return MappingProxyType(self._index)

    def get(self, node_id: NodeId) -> NodeState | None:
        return self._index.get(node_id)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._index

    def __iter__(self) -> Iterator[NodeState]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)
