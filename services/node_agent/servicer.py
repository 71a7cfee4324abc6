"""The NodeAgent servicer: decode, delegate (control.py, stage.py), encode."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import grpc

from edgesplit.rpc.authz import caller
from edgesplit.rpc.errors import TooLarge, maps_errors
from edgesplit.v1 import node_agent_pb2 as na
from edgesplit.v1 import node_agent_pb2_grpc as na_grpc
from services.node_agent.control import Control, evict_idle
from services.node_agent.frame_guard import caller_node, check_hello, refuse_source
from services.node_agent.stage import Stage

log = logging.getLogger(__name__)
_OK = grpc.StatusCode.OK.value[0]


class AckWriter:
    """Writes a link's acks back as they are made."""

    def __init__(self, context: Any) -> None:
        self.context = context

    async def write(self, ack: na.LinkAck, src: str) -> None:
        await self.context.write(ack)

    async def drain(self) -> None:
        return None


@dataclass(frozen=True, slots=True)
class AgentIdentity:
    """What GetInfo says about the node, and the probe limit."""

    node_id: str
    device: str
    x25519_public: bytes
    probe_max_bytes: int


class NodeAgentServicer(na_grpc.NodeAgentServicer):
    def __init__(self, identity: AgentIdentity, control: Control, stage: Stage) -> None:
        self.me = identity
        self.control = control
        self.stage = stage

    @maps_errors
    async def Prepare(self, request: na.PrepareRequest, context: Any) -> na.PrepareResponse:
        return await self.control.prepare(request.assignment, context.time_remaining())

    @maps_errors
    async def Commit(self, request: na.CommitRequest, context: Any) -> na.CommitResponse:
        duplicate = await self.control.commit(request.epoch, request.decision)
        return na.CommitResponse(epoch=request.epoch, duplicate=duplicate)

    @maps_errors
    async def Abort(self, request: na.AbortRequest, context: Any) -> na.AbortResponse:
        return na.AbortResponse(committed_epoch=await self.control.abort(request.epoch,
                                                                         request.decision))

    @maps_errors
    async def Hello(self, request: na.LinkHello, context: Any) -> na.LinkHello:
        """A peer's per-process link salt for ours (link_salt.py)."""
        salts = self.control.book.salts
        check_hello(request, caller(context))
        salts.learn(request.node_id, request.salt)
        return na.LinkHello(node_id=self.me.node_id, salt=salts.salt)

    def ack_writer(self, context: Any) -> AckWriter:
        return AckWriter(context)

    async def Link(self, request_iterator: Any, context: Any) -> None:
        """One peer's link stream: each message handled on receipt; a refusal
        acked at once, accepted messages when the sender asks (``ack_now``:
        one ack covers every accepted one before it) or when the stream ends.
        Most frames then cost no ack write here and no ack read at the sender."""
        acks = self.ack_writer(context)
        peer = caller_node(caller(context))  # with mTLS: what every message must name
        owed: tuple[int, str] | None = None  # the last accepted message not acked yet
        try:
            while True:
                msg = await context.read()
                if msg is grpc.aio.EOF:
                    break
                ack = refuse_source(msg, peer, self.control.book) or self.stage.on_message(msg)
                if ack.code == _OK and not msg.ack_now:
                    owed = (msg.seq, _source(msg))
                    continue
                if msg.ack_now and ack.code != _OK and owed is not None:
                    await acks.write(na.LinkAck(seq=owed[0]), owed[1])  # a refusal names itself
                await acks.write(ack, _source(msg))
                if msg.ack_now:
                    owed = None
            if owed is not None:  # the sender closed its side: what it is owed
                await acks.write(na.LinkAck(seq=owed[0]), owed[1])
        finally:
            await acks.drain()

    @maps_errors
    async def Probe(self, request: na.ProbeRequest, context: Any) -> na.ProbeResponse:
        """Link probe (reporter.py): answer at once, bounded payload."""
        if len(request.payload) > self.me.probe_max_bytes:
            raise TooLarge(f"probe payload {len(request.payload)} > "
                           f"{self.me.probe_max_bytes} bytes")
        return na.ProbeResponse(received_bytes=len(request.payload))

    @maps_errors
    async def GetInfo(self, request: na.GetInfoRequest, context: Any) -> na.GetInfoResponse:
        return self.control.info(self.me.node_id, self.me.x25519_public, self.me.device)


def _source(msg: na.LinkMessage) -> str:
    """The sending node a message names (where its ack goes back to)."""
    kind = msg.WhichOneof("kind")
    if kind == "frame":
        return msg.frame.header.src
    if kind == "step_failure":
        return msg.step_failure.reporter
    return ""


async def housekeeping(control: Control, idle_timeout_s: float) -> None:
    """Evict idle sessions and keep the gauges current."""
    while True:
        await asyncio.sleep(min(5.0, max(idle_timeout_s / 4, 0.05)))
        evict_idle(control.book, idle_timeout_s)
