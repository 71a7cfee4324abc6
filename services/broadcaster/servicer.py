"""Broadcaster servicer: decode, delegate to the rollout or the registry, encode."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from edgesplit.errors import Code, DomainError
from edgesplit.rpc.authz import caller
from edgesplit.rpc.convert import (
    duration,
    plan_from_proto,
    plan_to_proto,
    seconds,
    status_code,
    wire_dtype_from_proto,
)
from edgesplit.rpc.errors import InvalidRequest, maps_errors
from edgesplit.v1 import broadcaster_pb2 as pb
from edgesplit.v1 import broadcaster_pb2_grpc as pb_grpc
from services.broadcaster import metrics as m
from services.broadcaster.config import BroadcasterConfig
from services.broadcaster.rollout import ApplyOptions, Rollout, RolloutResult


class NotAssigned(DomainError):
    """FetchShard by a node that is not assigned the shard."""

    code = Code.PERMISSION_DENIED


def options_from_request(request: pb.ApplyRequest, config: BroadcasterConfig) -> ApplyOptions:
    timeout = config.prepare_timeout_s
    if request.HasField("prepare_timeout"):
        timeout = seconds(request.prepare_timeout, "prepare_timeout")
    if timeout <= 0:
        raise InvalidRequest("prepare_timeout must be positive", field="prepare_timeout")
    dtype = wire_dtype_from_proto(request.wire_dtype, "wire_dtype", config.wire_dtype)
    return ApplyOptions(prepare_timeout_s=timeout, wire_dtype=dtype)


def result_to_proto(r: RolloutResult) -> pb.ApplyResponse:
    return pb.ApplyResponse(
        committed=r.committed, epoch=r.epoch, elapsed=duration(r.elapsed_s),
        duplicate=r.duplicate,
        nodes=[pb.NodeOutcome(node_id=n.node_id,
                              state=pb.RolloutState.Value(f"ROLLOUT_STATE_{n.state.upper()}"),
                              code=status_code(n.code or "OK"), detail=n.detail,
                              prepare=duration(n.prepare_s), shards_fetched=n.shards_fetched,
                              shards_cached=n.shards_cached) for n in r.nodes])


class BroadcasterServicer(pb_grpc.BroadcasterServicer):
    def __init__(self, config: BroadcasterConfig, rollout: Rollout) -> None:
        self.config = config
        self.rollout = rollout
        self.registry = rollout.registry
        self.chunk = max(4096, min(config.fetch_chunk_bytes, config.max_message_bytes // 2))

    @maps_errors
    async def Apply(self, request: pb.ApplyRequest, context: Any) -> pb.ApplyResponse:
        if not request.HasField("plan"):
            raise InvalidRequest("plan is required", field="plan")
        plan = plan_from_proto(request.plan)
        if plan.epoch < 1 or not plan.routes:
            raise InvalidRequest("plan needs an epoch >= 1 and at least one route", field="plan")
        result = await self.rollout.apply(plan, options_from_request(request, self.config))
        return result_to_proto(result)

    @maps_errors
    async def Current(self, request: pb.CurrentRequest, context: Any) -> pb.CurrentResponse:
        current = self.rollout.current
        return pb.CurrentResponse(plan=plan_to_proto(current) if current else None,
                                  last_epoch=self.rollout.last_epoch)

    @maps_errors
    async def FetchShard(self, request: pb.FetchShardRequest,
                         context: Any) -> AsyncIterator[pb.FetchShardResponse]:
        # Permission first, so an unassigned caller cannot even probe which digests exist.
        # With mTLS the certificate names the node: it fetches for itself only.
        who = caller(context)
        if who is not None and who.name != request.node_id:
            m.FETCH_DENIED.inc()
            raise NotAssigned(f"{who.uri} may not fetch for node {request.node_id!r}")
        if not self.rollout.may_fetch(request.node_id, request.sha256):
            m.FETCH_DENIED.inc()
            raise NotAssigned(f"node {request.node_id!r} is not assigned shard "
                                  f"{request.sha256[:16]} in the committed or preparing epoch")
        total = self.registry.blob_size(request.sha256)
        if request.offset > total:
            raise InvalidRequest(f"offset {request.offset} beyond the blob's {total} bytes")
        offset = request.offset
        while offset < total:
            # Disk reads off the event loop: other nodes' fetches and Applies go on meanwhile.
            data = await asyncio.to_thread(self.registry.read, request.sha256, offset, self.chunk)
            if not data:
                break
            yield pb.FetchShardResponse(offset=offset, data=data, total_bytes=total)
            m.SHARD_BYTES.inc(len(data))
            offset += len(data)

    @maps_errors
    async def ListShards(self, request: pb.ListShardsRequest,
                         context: Any) -> pb.ListShardsResponse:
        return pb.ListShardsResponse(shards=[
            pb.ShardInfo(name=s.name, sha256=s.sha256, size_bytes=s.size_bytes,
                         model_digest=s.model_digest) for s in self.registry.list()])
