"""Typed configuration of the split_reviser service."""

from __future__ import annotations

from pydantic import PositiveInt

from edgesplit.rpc.config import ServiceConfig, opt


class SplitReviserConfig(ServiceConfig):
    """Split reviser (SR): the planner behind a gRPC face."""

    # Bounds on one Revise: the exact search grows with nodes x layers and a
    # multi-route plan with entries, so a caller cannot buy minutes of solver time.
    max_nodes: PositiveInt = opt(256, "largest cluster one Revise may describe (nodes)")
    max_layers: PositiveInt = opt(256, "largest model one Revise may describe (decoder layers)")
    max_routes: PositiveInt = opt(32, "most entries (routes) one Revise may ask for")
