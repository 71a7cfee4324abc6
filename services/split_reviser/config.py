"""Typed configuration of the split_reviser service."""

from __future__ import annotations

from edgesplit.rpc.config import ServiceConfig


class SplitReviserConfig(ServiceConfig):
    """Split reviser (SR): the planner behind a gRPC face."""
