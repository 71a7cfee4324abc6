"""Typed configuration of the split_reviser service."""

from __future__ import annotations

from dataclasses import dataclass

from edgesplit.rpc.config import ServiceConfig, opt


@dataclass(frozen=True)
class SplitReviserConfig(ServiceConfig):
    """Split reviser (SR): the planner behind a gRPC face."""

    # Bounds on one Revise: the exact search grows with nodes x layers and a
    # multi-route plan with entries, so a caller cannot buy minutes of solver time.
    max_nodes: int = opt(256, "largest cluster one Revise may describe (nodes)")
    max_layers: int = opt(256, "largest model one Revise may describe (decoder layers)")
    max_routes: int = opt(32, "most entries (routes) one Revise may ask for")
