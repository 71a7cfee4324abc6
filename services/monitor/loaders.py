"""The monitor's static inputs: the node inventory and the model profile, from files.

Both are plain data a person writes or a tool prints, so errors name the file
and the entry instead of surfacing later as a planner failure.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from edgesplit.core.cluster_config import ConfigError, profile_from_json
from edgesplit.core.inventory import NodeInventory
from edgesplit.core.types import ModelProfile, NodeId, NodeState, Trust, parse_layer_key
from edgesplit.errors import Code, DomainError

_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9,
          "gb": 10**9, "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30,
          "tib": 2**40}
_SIZE = re.compile(r"^\s*([0-9.eE+-]+)\s*([a-zA-Z]*)\s*$")


class ConfigFileError(DomainError, ValueError):
    """An inventory or profile file that cannot be used; the message names file and entry."""

    code = Code.INVALID_ARGUMENT


def parse_bytes(raw: Any) -> int:
    """``17179869184``, ``"16GiB"`` or ``"16 GB"`` -> bytes."""
    if isinstance(raw, (int, float)):
        return int(raw)
    m = _SIZE.match(str(raw))
    if m is None or m.group(2).lower() not in _UNITS:
        raise ValueError(f"not a size: {raw!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def _trust(raw: Any) -> Trust:
    if isinstance(raw, bool):
        return Trust.TRUSTED if raw else Trust.UNTRUSTED
    try:
        return Trust[str(raw).upper()]
    except KeyError:
        raise ValueError(f"trust must be trusted or untrusted, not {raw!r}") from None


def _first(entry: dict[str, Any], *keys: str, default: Any = None) -> Any:
    for k in keys:
        if k in entry:
            return entry[k]
    return default


def node_from_entry(entry: dict[str, Any]) -> NodeState:
    node_id = _first(entry, "id", "node_id", "name")
    if not node_id:
        raise ValueError("missing id")
    flops = float(_first(entry, "flops_per_s", "flops", "speed", default=0.0))
    layer_seconds = tuple(sorted((parse_layer_key(k), float(v))
                                 for k, v in (entry.get("layer_seconds") or {}).items()))
    if flops <= 0 and not layer_seconds:
        raise ValueError("flops_per_s must be positive (or give layer_seconds)")
    return NodeState(
        node_id=NodeId(str(node_id)),
        trust=_trust(entry.get("trust", "untrusted")),
        memory_bytes=parse_bytes(_first(entry, "memory_bytes", "memory", default=0)),
        flops_per_s=flops, layer_seconds=layer_seconds,
        trusted_by=tuple(NodeId(str(t)) for t in entry.get("trusted_by") or ()),
        address=str(entry.get("address", "")))


def _inventory_doc(path: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The file's top-level mapping (empty for a bare list) and its node entries."""
    raw = yaml.safe_load(Path(path).read_text())
    entries = raw.get("nodes") if isinstance(raw, dict) else raw
    if not isinstance(entries, list):
        raise ConfigFileError(f"{path}: expected a list of nodes (or {{nodes: [...]}})")
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ConfigFileError(f"{path}: nodes[{i}] is not a mapping")
    return (raw if isinstance(raw, dict) else {}), entries


def _inventory_of(path: str | Path, entries: list[dict[str, Any]]) -> NodeInventory:
    nodes = []
    for i, entry in enumerate(entries):
        try:
            nodes.append(node_from_entry(entry))
        except (ValueError, TypeError) as exc:
            raise ConfigFileError(f"{path}: nodes[{i}]: {exc}") from exc
    try:
        return NodeInventory(tuple(nodes))
    except ValueError as exc:
        raise ConfigFileError(f"{path}: {exc}") from exc


def load_inventory(path: str | Path) -> NodeInventory:
    """``{nodes: [...]}`` or a bare list, in YAML or JSON (JSON is YAML)."""
    return _inventory_of(path, _inventory_doc(path)[1])


@dataclass(frozen=True)
class ControlInventory:
    """The inventory as the control plane signs by: the nodes (address, trust,
    ``trusted_by``), each node's enrolled X25519 key and the privacy depth.

    The same file as the monitor's; a node's ``agreement_public_key`` (base64
    of the raw 32 bytes) binds its key to its id, and a top-level
    ``privacy_depth`` (default 1) says how many first layers are sensitive.
    """

    nodes: NodeInventory
    agreement_keys: Mapping[NodeId, bytes]
    privacy_depth: int = 1


def _agreement_key(raw: Any) -> bytes:
    try:
        key = base64.b64decode(str(raw), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("agreement_public_key is not base64") from None
    if len(key) != 32:
        raise ValueError(f"agreement_public_key must be 32 bytes, not {len(key)}")
    return key


def load_control_inventory(path: str | Path) -> ControlInventory:
    doc, entries = _inventory_doc(path)
    nodes = _inventory_of(path, entries)
    keys: dict[NodeId, bytes] = {}
    for i, (entry, node) in enumerate(zip(entries, nodes.nodes, strict=True)):
        if entry.get("agreement_public_key"):
            try:
                keys[node.node_id] = _agreement_key(entry["agreement_public_key"])
            except ValueError as exc:
                raise ConfigFileError(f"{path}: nodes[{i}]: {exc}") from exc
    depth = doc.get("privacy_depth", 1)
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
        raise ConfigFileError(f"{path}: privacy_depth must be a whole number >= 0, "
                              f"not {depth!r}")
    return ControlInventory(nodes, MappingProxyType(keys), depth)


def load_profile(path: str | Path) -> ModelProfile:
    """The schema ``edgesplit model profile DIR --json`` prints (extra keys ignored),
    read by the planner's own parser."""
    try:
        return profile_from_json(json.loads(Path(path).read_text()))
    except (ConfigError, ValueError, OSError) as exc:
        raise ConfigFileError(f"{path}: not a model profile ({type(exc).__name__}: {exc})") from exc
