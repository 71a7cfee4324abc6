"""Orchestrator RPCs: Status, History, EnsureRoute."""

from __future__ import annotations

import time
from typing import Any

from edgesplit.core.types import Privacy
from edgesplit.rpc.convert import PRIVACY
from edgesplit.rpc.convert_orchestrator import decision_to_proto
from edgesplit.rpc.errors import InvalidRequest, maps_errors
from edgesplit.v1 import orchestrator_pb2 as pb
from edgesplit.v1 import orchestrator_pb2_grpc as pb_grpc
from services.orchestrator.loop import ControlLoop, status


class OrchestratorServicer(pb_grpc.OrchestratorServicer):
    def __init__(self, loop: ControlLoop) -> None:
        self.loop = loop

    @maps_errors
    async def Status(self, request: pb.StatusRequest, context: Any) -> pb.StatusResponse:
        return status(self.loop, time.time())

    @maps_errors
    async def History(self, request: pb.HistoryRequest, context: Any) -> pb.HistoryResponse:
        limit = request.limit or 50
        if limit > 1000:
            raise InvalidRequest("limit: at most 1000", field="limit")
        return pb.HistoryResponse(decisions=[
            decision_to_proto(d) for d in self.loop.store.history(limit, request.before_id)])

    @maps_errors
    async def EnsureRoute(self, request: pb.EnsureRouteRequest,
                          context: Any) -> pb.EnsureRouteResponse:
        if not request.entry:
            raise InvalidRequest("entry: empty", field="entry")
        if PRIVACY.decode(request.privacy, "privacy") is not Privacy.HIGH:
            plan = self.loop.plan
            return pb.EnsureRouteResponse(epoch=plan.epoch if plan else 0)
        epoch, changed = await self.loop.ensure_private_route(request.entry)
        return pb.EnsureRouteResponse(epoch=epoch, reconfigured=changed)
