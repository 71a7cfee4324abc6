"""Calls from the broadcaster to node agents: deadlines, outcomes.

Every call has a deadline. Retries are the transport's: Prepare, Commit, Abort
and GetInfo are idempotent (``edgesplit.rpc.transport.IDEMPOTENT``), so the
channel retries them on UNAVAILABLE, with backoff, inside the call's deadline.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import grpc

from edgesplit.errors import Code, DomainError
from edgesplit.rpc.transport import Transport
from edgesplit.v1 import node_agent_pb2 as na
from edgesplit.v1 import node_agent_pb2_grpc as na_grpc
from services.broadcaster import metrics as m

log = logging.getLogger(__name__)


@dataclass
class NodeResult:
    """What happened on one node during one rollout (NodeOutcome on the wire)."""

    node_id: str
    state: str  # "prepared", "committed", "aborted", "failed", "timeout"
    code: str = ""
    detail: str = ""
    prepare_s: float = 0.0
    shards_fetched: int = 0
    shards_cached: int = 0

    @property
    def ok(self) -> bool:
        return self.state in ("prepared", "committed")

    def failed(self, exc: BaseException) -> NodeResult:
        self.code, self.detail = _code_detail(exc)
        self.state = "timeout" if self.code == "DEADLINE_EXCEEDED" else "failed"
        return self


class NodeError(DomainError):
    """A node answered something unusable (not a gRPC failure)."""

    code = Code.FAILED_PRECONDITION


def _code_detail(exc: BaseException) -> tuple[str, str]:
    if isinstance(exc, grpc.aio.AioRpcError):
        return exc.code().name, exc.details() or ""
    if isinstance(exc, NodeError):
        return exc.code.name, str(exc)
    if isinstance(exc, asyncio.TimeoutError):
        return "DEADLINE_EXCEEDED", "timed out"
    return "UNKNOWN", f"{type(exc).__name__}: {exc}"


class NodeClients:
    """One channel per node address, reused across rollouts (a rollout with
    cached shards is a few round trips: reconnecting would dominate it)."""

    def __init__(self, transport: Transport, rpc_timeout_s: float) -> None:
        self.rpc_timeout_s = rpc_timeout_s
        self._transport = transport
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._keys: dict[str, tuple[str, bytes]] = {}  # node -> (address, X25519 public)

    def _stub(self, address: str) -> na_grpc.NodeAgentStub:
        channel = self._channels.get(address)
        if channel is None:
            channel = self._channels[address] = self._transport.aio_channel(address)
        return na_grpc.NodeAgentStub(channel)

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()

    # ---- keys ----------------------------------------------------------------
    async def check_key(self, node_id: str, address: str, enrolled: bytes) -> bytes:
        """Check that ``address`` answers as ``node_id`` with its enrolled X25519
        key (GetInfo once, then cached per address and key). The enrolled key,
        not the answer, is what gets signed: whoever answers at an address
        cannot get shard keys wrapped to a key of its choosing."""
        if self._keys.get(node_id) == (address, enrolled):
            return enrolled
        stub = self._stub(address)
        info = await stub.GetInfo(na.InfoRequest(), timeout=self.rpc_timeout_s)
        if info.node_id != node_id:  # a wrong address would get another node's shards keys
            raise NodeError(f"{address} is node {info.node_id!r}, not {node_id!r}")
        if bytes(info.x25519_public) != enrolled:
            m.KEY_MISMATCH.inc()
            raise NodeError(f"{node_id} at {address} does not hold its enrolled X25519 key")
        self._keys[node_id] = (address, enrolled)
        return enrolled

    def forget(self, node_id: str) -> None:
        """Drop a cached key: the node may have been re-keyed (a failed unwrap)."""
        self._keys.pop(node_id, None)

    # ---- two phases -------------------------------------------------------------
    async def prepare(self, node_id: str, address: str, envelope: na.SignedEnvelope,
                      timeout_s: float) -> NodeResult:
        stub = self._stub(address)
        request = na.PrepareRequest(assignment=envelope)
        start = time.perf_counter()
        result = NodeResult(node_id, "prepared")
        try:
            reply = await stub.Prepare(request, timeout=timeout_s)
            result.shards_fetched, result.shards_cached = reply.shards_fetched, reply.shards_cached
        except Exception as exc:  # noqa: BLE001 - every failure is this node's outcome
            result.failed(exc)
        result.prepare_s = time.perf_counter() - start
        return result

    async def commit(self, node_id: str, address: str, request: na.CommitRequest
                     ) -> tuple[str, str]:
        """("", "") on success, else (code, detail)."""
        stub = self._stub(address)
        try:
            await stub.Commit(request, timeout=self.rpc_timeout_s)
            return "", ""
        except Exception as exc:  # noqa: BLE001 - reported per node
            return _code_detail(exc)

    async def abort(self, node_id: str, address: str, request: na.AbortRequest
                    ) -> tuple[str, str]:
        epoch = request.epoch
        stub = self._stub(address)
        try:
            await stub.Abort(request, timeout=self.rpc_timeout_s)
            return "", ""
        except Exception as exc:  # noqa: BLE001 - reported per node
            code, detail = _code_detail(exc)
            # Harmless: a node that missed the Abort keeps the prepared epoch
            # unused (never committed) until a newer Prepare replaces it.
            log.warning("abort of epoch %d on %s failed: %s %s", epoch, node_id, code, detail)
            return code, detail
