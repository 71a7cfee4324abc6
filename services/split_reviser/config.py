"""Typed configuration of the split_reviser service."""

from __future__ import annotations

from dataclasses import dataclass

from edgesplit.rpc.config import ServiceConfig


@dataclass(frozen=True)
class SplitReviserConfig(ServiceConfig):
    """Split reviser (SR): the planner behind a gRPC face."""
