"""Typed configuration of the broadcaster service."""

from __future__ import annotations

from dataclasses import dataclass

from edgesplit.rpc.config import ServiceConfig


@dataclass(frozen=True)
class BroadcasterConfig(ServiceConfig):
    """Broadcaster (RB): signed two-phase rollout and the shard registry."""
