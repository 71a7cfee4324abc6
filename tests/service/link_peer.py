"""The test's side of an agent's links: a recording next hop, and one end of
a link stream into the agent (tests/service/test_node_agent.py,
tests/security/test_agent_frames.py)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import grpc

from edgesplit.security.channel import SALT_LEN
from edgesplit.v1 import node_agent_pb2 as na
from edgesplit.v1 import node_agent_pb2_grpc as na_grpc


class Recorder(na_grpc.NodeAgentServicer):
    """node-2: answers hellos and keeps every frame the agent forwards on its link."""

    def __init__(self, node_id: str = "node-2") -> None:
        self.node_id = node_id
        self.frames: asyncio.Queue[na.Frame] = asyncio.Queue()
        self.batches: asyncio.Queue[na.BatchFrame] = asyncio.Queue()
        self.salt = os.urandom(SALT_LEN)
        self.hellos: list[bytes] = []  # the agent's salts, one per process life

    @property
    def peer_salt(self) -> bytes:
        return self.hellos[-1] if self.hellos else b""

    async def Hello(self, request: na.LinkHello, context: Any) -> na.LinkHello:
        if request.salt not in self.hellos:
            self.hellos.append(request.salt)
        return na.LinkHello(node_id=self.node_id, salt=self.salt)

    async def Link(self, request_iterator: Any, context: Any) -> AsyncIterator[na.LinkAck]:
        async for msg in request_iterator:
            if msg.HasField("frame"):
                await self.frames.put(msg.frame)
            if msg.HasField("batch_frame"):
                await self.batches.put(msg.batch_frame)
            yield na.LinkAck(seq=msg.seq)


def status_of_ack(ack: na.LinkAck) -> grpc.StatusCode:
    return next(c for c in grpc.StatusCode if c.value[0] == ack.code)


class LinkEnd:
    """The test's end of one link stream into the agent (as a peer would hold it)."""

    def __init__(self, stub: na_grpc.NodeAgentStub) -> None:
        self.call = stub.Link(timeout=120)
        self.seq = 0

    async def send(self, msg: na.LinkMessage) -> na.LinkAck:
        """Send ``msg`` and read its ack (asked for at once, as a sender timing
        the link does)."""
        self.seq += 1
        msg.seq = self.seq
        msg.ack_now = True
        await self.call.write(msg)
        ack = await asyncio.wait_for(self.call.read(), 30)
        assert ack.seq == self.seq
        return ack

    async def status(self, msg: na.LinkMessage) -> grpc.StatusCode:
        return status_of_ack(await self.send(msg))

    async def frame(self, frame: na.Frame) -> grpc.StatusCode:
        return await self.status(na.LinkMessage(frame=frame))
