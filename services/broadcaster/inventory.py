"""The broadcaster's inventory: where nodes are, whose keys they hold, whom they trust.

An assignment the broadcaster signs carries peers' addresses and X25519
keys and the nodes an entry trusts with sensitive layers. None of that may
come from the caller of Apply (that made Apply a signing oracle: a caller
could name its own agent as a trusted node-1). It comes from the same
inventory file the monitor reads (``services.monitor.loaders``), where each
node's ``agreement_public_key`` binds its key to its id.

The file is re-read when it changes (its size or modification time), so an
operator enrols or moves a node without restarting the broadcaster; a file
that no longer parses refuses the Apply that finds it (FAILED_PRECONDITION)
and keeps nothing of it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from edgesplit.core.inventory import NodeInventory
from edgesplit.core.trust import trusted_by_all
from edgesplit.core.types import NodeId, Plan
from edgesplit.rpc.errors import InvalidRequest, Precondition
from services.monitor.loaders import ConfigFileError, ControlInventory, load_control_inventory

log = logging.getLogger(__name__)
EMPTY = ControlInventory(NodeInventory(()), {}, 1)


class InventoryFile:
    """``load_control_inventory`` of one path, re-read only when the file changes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path) if path else None
        self._stamp: tuple[int, int] | None = None
        self._inventory = EMPTY
        if self.path is None:
            log.warning("no --inventory: every Apply will be refused (no node is known)")
        self.current()  # a bad file fails at start-up, naming itself

    def current(self) -> ControlInventory:
        if self.path is None:
            return EMPTY
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return EMPTY  # not written yet (a test bed writes it once its agents listen)
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            try:
                self._inventory = load_control_inventory(self.path)
            except (ConfigFileError, OSError) as exc:
                raise Precondition(f"inventory unusable: {exc}") from exc
            self._stamp = stamp
            log.info("inventory %s: %d nodes", self.path, len(self._inventory.nodes))
        return self._inventory


def check_plan_nodes(plan: Plan, inventory: ControlInventory) -> None:
    """Every node of the plan is enrolled with an address and a key."""
    unknown = sorted(n for n in plan.nodes if n not in inventory.nodes)
    if unknown:
        raise InvalidRequest(f"nodes {unknown} are not in the broadcaster's inventory")
    unusable = sorted(n for n in plan.nodes
                      if not inventory.nodes.index[n].address or n not in inventory.agreement_keys)
    if unusable:
        raise Precondition(f"nodes {unusable} have no address or no agreement_public_key "
                           "in the broadcaster's inventory")


def trusted_for(plan: Plan, inventory: ControlInventory) -> tuple[NodeId, ...]:
    """The signed trusted list of ``plan``'s assignments: the inventory's nodes
    every entry of the plan trusts (``core.trust.trusted_by_all``; pure)."""
    return trusted_by_all(inventory.nodes, [r.entry for r in plan.routes])
