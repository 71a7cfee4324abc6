"""Monitor servicer: decode, delegate to the hub, encode (docs/architecture.md §10.4)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, TypeVar

from edgesplit.rpc.convert import seconds
from edgesplit.rpc.errors import maps_errors
from edgesplit.v1 import monitor_pb2 as mpb
from edgesplit.v1 import monitor_pb2_grpc as mpb_grpc
from services.monitor.hub import IDENTITY_MISMATCH, MonitorHub

T = TypeVar("T")

# Auth-context keys that name the peer in its X.509 certificate.
_NAME_KEYS = ("x509_common_name", "x509_subject_alternative_name")


def peer_identity(context: Any) -> frozenset[str]:
    """Names the client certificate carries (CN and SANs); empty without one."""
    auth = context.auth_context() or {}
    return frozenset(v.decode() if isinstance(v, bytes) else str(v)
                     for key in _NAME_KEYS for v in auth.get(key, ()))


async def until_set(items: AsyncIterator[T], stop: asyncio.Event) -> AsyncIterator[T]:
    """``items`` until it ends or ``stop`` is set (a client stream blocks in between)."""
    it = aiter(items)
    stopped = asyncio.ensure_future(stop.wait())
    nxt: asyncio.Future[T] | None = None
    try:
        while True:
            nxt = asyncio.ensure_future(anext(it))
            await asyncio.wait({nxt, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not nxt.done():
                return
            try:
                item = nxt.result()
            except StopAsyncIteration:
                return
            yield item
    finally:
        stopped.cancel()
        if nxt is not None:
            # Stopped, or the call was cancelled: the last read ends (or ended, at
            # the same moment) with StopAsyncIteration; collect it so it is not logged.
            nxt.cancel()
            nxt.add_done_callback(_collect)


def _collect(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()


class MonitorServicer(mpb_grpc.MonitorServicer):
    def __init__(self, hub: MonitorHub, verify_identity: bool) -> None:
        self.hub = hub
        # With mTLS on, a node may only report as a name its certificate holds.
        self.verify_identity = verify_identity

    @maps_errors
    async def Report(self, request_iterator: AsyncIterator[mpb.ReportRequest],
                     context: Any) -> AsyncIterator[mpb.ReportResponse]:
        identity = peer_identity(context) if self.verify_identity else None
        bound, reporting = "", False
        try:
            async for report in until_set(request_iterator, self.hub.closing):
                # One stream speaks for one node: without mTLS this is the only
                # thing stopping a stream from interleaving several identities.
                bound = bound or report.node_id
                if report.node_id != bound:
                    yield self.hub.refuse_other(report, IDENTITY_MISMATCH,
                                                f"stream bound to {bound}")
                    continue
                ack = self.hub.ingest(report, identity)
                reporting = reporting or ack.accepted
                yield ack
        finally:
            # The stream of a node whose reports were accepted ended (not by the
            # monitor's own shutdown): the node may be gone. Any end counts: a
            # killed agent's stream often ends as a clean half-close would (gRPC
            # reads its torn-down connection as end-of-stream before it cancels
            # the call), and an agent that renews its stream reports on the new
            # one at once, which keeps it alive.
            if reporting and not self.hub.closing.is_set():
                self.hub.lost(bound)

    @maps_errors
    async def GetState(self, request: mpb.GetStateRequest, context: Any) -> mpb.GetStateResponse:
        return mpb.GetStateResponse(state=self.hub.state())

    @maps_errors
    async def WatchState(self, request: mpb.WatchStateRequest,
                         context: Any) -> AsyncIterator[mpb.WatchStateResponse]:
        async for state in self.hub.watch(seconds(request.min_interval, "min_interval")):
            yield mpb.WatchStateResponse(state=state)
