"""Typed configuration of the node_agent service."""

from __future__ import annotations

from dataclasses import dataclass

from edgesplit.rpc.config import ServiceConfig


@dataclass(frozen=True)
class NodeAgentConfig(ServiceConfig):
    """Node agent: runs assigned model segments and forwards encrypted frames."""
