"""NodeAgent and TestbedAdmin servicers: decode, delegate, encode."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from edgesplit.rpc.errors import InvalidRequest, NotFound, TooLarge, maps_errors
from edgesplit.security.keys import public_bytes
from edgesplit.security.signing import AssignmentVerdict
from edgesplit.v1 import node_agent_pb2 as na
from edgesplit.v1 import node_agent_pb2_grpc as na_grpc
from services.node_agent import metrics as m
from services.node_agent.config import NodeAgentConfig
from services.node_agent.dataplane import DataPlane, StepFailed
from services.node_agent.emulation import Emulator
from services.node_agent.shards import ShardStore

log = logging.getLogger(__name__)


class NodeAgentServicer(na_grpc.NodeAgentServicer):
    def __init__(self, config: NodeAgentConfig, dataplane: DataPlane,
                 agreement_key: Any, shards: ShardStore | None = None) -> None:
        self.config = config
        self.shards = shards  # hook: fetches shards missing locally (shards.py)
        self.dp = dataplane
        self.book = dataplane.book
        self._public = public_bytes(agreement_key)
        self._prepare_lock = asyncio.Lock()  # one rollout step at a time

    @maps_errors
    async def Prepare(self, request: na.PrepareRequest, context: Any) -> na.PrepareResponse:
        async with self._prepare_lock:
            assignment, digest, verdict = self.book.verify(request.assignment,
                                                           int(time.time() * 1000))
            if verdict is AssignmentVerdict.DUPLICATE:
                return na.PrepareResponse(epoch=assignment.epoch, duplicate=True)
            # hook: fetch (and verify) shards not held yet, within this call's deadline
            fetched = await self.shards.ensure(assignment, context.time_remaining()) \
                if self.shards is not None else None
            # Loading weights is torch work: keep it off the event loop.
            loop = asyncio.get_running_loop()
            state, built, reused = await loop.run_in_executor(
                None, self.book.build, assignment, digest)
            self.book.set_prepared(state)
            log.info("prepared epoch %d (%d runners built, %d reused)",
                     assignment.epoch, built, reused)
            got, held = fetched if fetched is not None else (built, reused)
            return na.PrepareResponse(epoch=assignment.epoch, shards_fetched=got,
                                      shards_cached=held)

    @maps_errors
    async def Commit(self, request: na.CommitRequest, context: Any) -> na.CommitResponse:
        async with self._prepare_lock:
            duplicate = self.book.commit(request.epoch)
        m.EPOCH.set(request.epoch)
        if not duplicate:
            log.info("committed epoch %d", request.epoch)
        return na.CommitResponse(epoch=request.epoch, duplicate=duplicate)

    @maps_errors
    async def Abort(self, request: na.AbortRequest, context: Any) -> na.AbortResponse:
        async with self._prepare_lock:
            self.book.abort(request.epoch)
        committed = self.book.committed
        return na.AbortResponse(committed_epoch=committed.epoch if committed else 0)

    @maps_errors
    async def Forward(self, request: na.Frame, context: Any) -> na.FrameAck:
        start = time.perf_counter()
        ack = await self.dp.receive(request)
        # hook: lets the sender time the link without this node's compute (telemetry.py)
        ack.processing_s = time.perf_counter() - start
        ack.emulated_return_s = self.dp.emulator.conditions.link_delay_s.get(
            request.header.src, 0.0)
        return ack

    @maps_errors
    async def Probe(self, request: na.ProbeRequest, context: Any) -> na.ProbeResponse:
        """Link probe (services/node_agent/reporter.py): answer at once, bounded payload."""
        start = time.perf_counter()
        if len(request.payload) > self.config.probe_max_bytes:
            raise TooLarge(f"probe payload {len(request.payload)} > "
                           f"{self.config.probe_max_bytes} bytes")
        return na.ProbeResponse(
            received_bytes=len(request.payload), processing_s=time.perf_counter() - start,
            emulated_return_s=self.dp.emulator.conditions.link_delay_s.get(request.src, 0.0))

    @maps_errors
    async def Fail(self, request: na.StepFailure, context: Any) -> na.FrameAck:
        failure = StepFailed(request.failed_node, request.code, request.detail)
        if not self.dp.fail_step(request.session_id, request.step, failure):
            raise NotFound(f"no step {request.step} of session {request.session_id} waiting")
        return na.FrameAck(session_id=request.session_id, step=request.step)

    @maps_errors
    async def EndSession(self, request: na.EndSessionRequest,
                         context: Any) -> na.EndSessionResponse:
        if not request.session_id:
            raise InvalidRequest("session_id is empty")
        existed = False
        for runner in self.book.all_runners():
            existed |= bool(runner.end_session(request.session_id))
        if not existed:
            raise NotFound(f"unknown session {request.session_id!r}")
        return na.EndSessionResponse(existed=True)

    @maps_errors
    async def GetInfo(self, request: na.InfoRequest, context: Any) -> na.NodeInfo:
        info = na.NodeInfo(node_id=self.config.node_id, x25519_public=self._public,
                           device=self.config.device)
        if self.book.committed is not None:
            info.committed_epoch = self.book.committed.epoch
            info.segments.extend(self.book.committed.assignment.segments)
        if self.book.prepared is not None:
            info.prepared_epoch = self.book.prepared.epoch
        runners = self.book.all_runners()
        info.sessions = sum(r.session_count() for r in runners)
        info.kv_cache_bytes = sum(r.kv_bytes() for r in runners)
        return info


class TestbedAdminServicer(na_grpc.TestbedAdminServicer):
    """Emulated conditions; only served when the test bed enables it."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator

    @maps_errors
    async def SetConditions(self, request: na.SetConditionsRequest,
                            context: Any) -> na.Conditions:
        try:
            return self.emulator.update(request.conditions, request.replace).to_proto()
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from exc

    @maps_errors
    async def GetConditions(self, request: na.InfoRequest, context: Any) -> na.Conditions:
        return self.emulator.conditions.to_proto()


async def housekeeping(dp: DataPlane, idle_timeout_s: float) -> None:
    """Evict idle sessions and keep the gauges current."""
    while True:
        await asyncio.sleep(min(5.0, max(idle_timeout_s / 4, 0.05)))
        runners = dp.book.all_runners()
        for r in runners:
            r.evict_idle(time.monotonic(), idle_timeout_s)
        m.KV_BYTES.set(sum(r.kv_bytes() for r in runners))
        m.SESSIONS.set(sum(r.session_count() for r in runners))
