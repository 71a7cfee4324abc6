"""SplitReviser.Revise: decode, call the pure planner, encode (docs/architecture.md §10.4)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from prometheus_client import Histogram

from edgesplit.core.planner import SolveResult, solve
from edgesplit.core.route import route_error
from edgesplit.core.types import Epoch, NodeId
from edgesplit.rpc import convert as cv
from edgesplit.rpc.errors import InvalidRequest, TooLarge, maps_errors
from edgesplit.v1 import split_reviser_pb2 as sr
from edgesplit.v1 import split_reviser_pb2_grpc as sr_grpc

SOLVE_SECONDS = Histogram("edgesplit_planner_solve_seconds", "Time to solve one Revise",
                          ["mode"], buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                             1, 2.5, 5, 10))


@dataclass(frozen=True, slots=True)
class Limits:
    """The largest instance one Revise may ask for (SplitReviserConfig)."""

    max_nodes: int = 256
    max_layers: int = 256
    max_routes: int = 32

    def check(self, request: sr.ReviseRequest) -> None:
        """RESOURCE_EXHAUSTED before any decoding or solving of an oversized instance."""
        nodes = len(request.state.nodes)
        sizes = (("state.nodes", nodes, self.max_nodes),
                 ("state.links", len(request.state.links), max(nodes * (nodes - 1), 0)),
                 ("profile.layers", len(request.profile.layers), self.max_layers),
                 ("entries", len(request.entries), self.max_routes),
                 ("current.routes", len(request.current.routes), self.max_routes))
        for name, size, limit in sizes:
            if size > limit:
                raise TooLarge(f"{name}: {size} exceeds this planner's limit of {limit}")


def decode(request: sr.ReviseRequest) -> dict[str, Any]:
    state = cv.cluster_from_proto(request.state)
    if not state.nodes:
        raise InvalidRequest("state.nodes: empty", field="state.nodes")
    profile = cv.profile_from_proto(request.profile)
    current = cv.plan_from_proto(request.current, "current") if request.current.routes else None
    known = {n.node_id for n in state.nodes}
    entries = [NodeId(e) for e in request.entries] or (
        list(current.entries) if current else [])
    if not entries:
        raise InvalidRequest("entries: empty and no current plan to take them from",
                             field="entries")
    for i, e in enumerate(entries):
        if e not in known:
            raise InvalidRequest(f"entries[{i}]: unknown node {e!r}", field=f"entries[{i}]")
    if current is not None:
        for r in current.routes:
            why = route_error(r, profile.num_layers)
            if why:
                raise InvalidRequest(f"current.routes[{r.key}]: {why}",
                                     field="current.routes")
    epoch = request.epoch or ((current.epoch if current else 0) + 1)
    return {"state": state, "profile": profile,
            "workload": cv.workload_from_proto(request.workload), "entries": entries,
            "mode": cv.mode_from_proto(request.mode),
            "weights": cv.weights_from_proto(request.weights), "current": current,
            "epoch": Epoch(epoch)}


def encode(result: SolveResult, nodes: int, layers: int) -> sr.ReviseResponse:
    reply = sr.ReviseResponse(
        feasible=result.plan is not None, reason=result.reason,
        cost=cv.cost_to_proto(result.cost),
        stats=sr.SolverStats(method=result.stats.method,
                             solve=cv.duration(result.stats.elapsed_s or 0.0),
                             optimal=result.optimal,
                             gap=result.gap if result.gap is not None else -1.0,
                             nodes=nodes, layers=layers))
    if result.plan is not None:
        reply.plan.CopyFrom(cv.plan_to_proto(result.plan))
    if result.current_cost is not None:
        reply.current_cost.CopyFrom(cv.cost_to_proto(result.current_cost))
    return reply


class SplitReviserServicer(sr_grpc.SplitReviserServicer):
    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()

    @maps_errors
    async def Revise(self, request: sr.ReviseRequest, context: Any) -> sr.ReviseResponse:
        self.limits.check(request)
        args = decode(request)
        loop = asyncio.get_running_loop()
        start = time.perf_counter()
        # Large instances take a while: keep the event loop free (health checks).
        result = await loop.run_in_executor(
            None, lambda: solve(**args, clock=time.perf_counter))
        SOLVE_SECONDS.labels(args["mode"].name.lower()).observe(time.perf_counter() - start)
        return encode(result, len(args["state"].nodes), args["profile"].num_layers)
