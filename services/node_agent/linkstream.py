"""The sending end of a link: one long-lived ``NodeAgent.Link`` stream per peer.

Frames and session control to one peer go in order on one bidirectional
stream; the peer checks each message on receipt (not after its compute) and
acks a refusal at once. Accepted messages are acked only when the sender asks
(``LinkMessage.ack_now``), one ack covering every accepted message before it:
a frame of the per-token path then costs the peer no ack write and this side
no ack read. The sender asks for messages it times (the first, and one every
``timed_every_s``: the passive link samples, links.py), for every message
that is not a frame, for frames large enough to time the bandwidth, and
whenever half its window is unacked. At most ``window`` messages are unacked
per link: a sender that gets ahead waits for acks (back-pressure), so nothing
queues without bound. When a stream breaks, every message still unacked
fails with UNAVAILABLE (the entry replays those steps) and the next send
opens a new stream on the same channel, whose reconnect backoff gRPC
handles. A stream carries a deadline like every call; it is replaced by a
fresh one at half its lifetime (the old one half-closes, and the peer acks
what it owes), so the deadline never cuts a message in flight.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from typing import Protocol

import grpc

from edgesplit.rpc.errors import Unavailable
from edgesplit.rpc.transport import Transport
from edgesplit.v1 import node_agent_pb2 as na
from edgesplit.v1 import node_agent_pb2_grpc as na_grpc
from services.node_agent.links import LinkTiming

log = logging.getLogger(__name__)
AckFuture = asyncio.Future[na.LinkAck]
_UNAVAILABLE = grpc.StatusCode.UNAVAILABLE.value[0]
_OK = grpc.StatusCode.OK.value[0]
_FRAMES = ("frame", "batch_frame")
# A frame larger than this is acked at once: its time tells the link's bandwidth.
TIMED_BYTES = LinkTiming().small_bytes


class LinkSender(Protocol):
    """What the stage and the entry send through (emulation.py wraps one)."""

    async def send(self, msg: na.LinkMessage, nbytes: int | None = None) -> AckFuture:
        """Queue ``msg`` (waiting while the window is full); the future is its ack.
        ``nbytes``: its ``ByteSize()``, when the caller has it already."""

    async def close(self) -> None: ...


class _Stream:
    def __init__(self, call: grpc.aio.StreamStreamCall, peer: str,
                 on_doubt: Callable[[str], None] | None = None) -> None:
        self.call = call
        self.peer = peer
        self.on_doubt = on_doubt  # hook (link_salt.py): the peer may have restarted
        self.opened = time.monotonic()
        self.seq = 0
        self.acks = 0  # acks read
        self.pending: dict[int, AckFuture] = {}
        self.lock = asyncio.Lock()  # gRPC takes one write at a time
        self.broken: BaseException | None = None
        self.reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        try:
            while True:
                ack = await self.call.read()
                if ack is grpc.aio.EOF:
                    break
                self.acks += 1
                if ack.code == _UNAVAILABLE and self.on_doubt is not None:
                    self.on_doubt(self.peer)
                self.acked(ack)
            self.fail(Unavailable(f"link to {self.peer} closed"))
        except asyncio.CancelledError:
            self.fail(Unavailable(f"link to {self.peer} closed"))
            raise
        except grpc.aio.AioRpcError as exc:
            self.fail(Unavailable(f"link to {self.peer} broke: {exc.code().name}"))

    def acked(self, ack: na.LinkAck) -> None:
        """A refusal resolves its own message; an accepted ack every message
        up to it (the pending ones are in seq order)."""
        pending = self.pending
        if ack.code != _OK:
            fut = pending.pop(ack.seq, None)
            if fut is not None and not fut.done():
                fut.set_result(ack)
            return
        while pending:
            seq = next(iter(pending))
            if seq > ack.seq:
                break
            fut = pending.pop(seq)
            if not fut.done():
                fut.set_result(ack)

    def fail(self, exc: BaseException) -> None:
        if self.broken is None and self.on_doubt is not None:
            self.on_doubt(self.peer)
        self.broken = self.broken or exc
        pending, self.pending = self.pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(exc)


class StreamLink:
    """One peer's link stream, re-opened when it breaks or ages."""

    def __init__(self, stub: na_grpc.NodeAgentStub, peer: str, window: int,
                 lifetime_s: float, on_doubt: Callable[[str], None] | None = None,
                 timed_every_s: float = 0.25) -> None:
        self._stub = stub
        self._on_doubt = on_doubt
        self.peer = peer
        self._window = asyncio.Semaphore(window)
        self._half = max(1, window // 2)
        self._timed_every_s = timed_every_s
        self._timed_at = -math.inf
        self._lifetime_s = lifetime_s
        self._stream: _Stream | None = None
        self._retired: set[_Stream] = set()

    @property
    def in_flight(self) -> int:
        """Messages sent and not acked yet (on every open stream)."""
        return sum(len(s.pending) for s in (self._stream, *self._retired) if s is not None)

    def _current(self) -> _Stream:
        s = self._stream
        if s is not None and s.broken is None \
                and time.monotonic() - s.opened < self._lifetime_s / 2:
            return s
        if s is not None:
            self._retire(s)
        s = self._stream = _Stream(self._stub.Link(timeout=self._lifetime_s), self.peer,
                                      self._on_doubt)
        return s

    def _retire(self, s: _Stream) -> None:
        """No new messages on ``s``; it ends once its acks are in."""
        self._retired.add(s)
        s.reader.add_done_callback(lambda _: self._retired.discard(s))
        if s.broken is None:
            asyncio.get_running_loop().create_task(_half_close(s))

    async def send(self, msg: na.LinkMessage, nbytes: int | None = None) -> AckFuture:
        await self._window.acquire()
        fut: AckFuture = asyncio.get_running_loop().create_future()
        fut.add_done_callback(lambda _: self._window.release())
        s = self._current()
        s.seq += 1
        msg.seq = s.seq
        s.pending[s.seq] = fut
        now = time.monotonic()
        if now - self._timed_at >= self._timed_every_s or len(s.pending) >= self._half \
                or msg.WhichOneof("kind") not in _FRAMES \
                or (msg.ByteSize() if nbytes is None else nbytes) > TIMED_BYTES:
            msg.ack_now = True
            self._timed_at = now
        try:
            async with s.lock:
                await s.call.write(msg)
        except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError) as exc:
            s.fail(Unavailable(f"link to {self.peer}: {exc}"))
        return fut

    async def close(self) -> None:
        for s in (self._stream, *self._retired):
            if s is not None:
                s.call.cancel()
                s.reader.cancel()


async def _half_close(s: _Stream) -> None:
    try:
        async with s.lock:
            await s.call.done_writing()
    except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError):
        pass


def ack_error(ack: na.LinkAck) -> tuple[str, str] | None:
    """(status code name, detail) of a refused message, None when accepted."""
    if ack.code == grpc.StatusCode.OK.value[0]:
        return None
    name = next((c.name for c in grpc.StatusCode if c.value[0] == ack.code), "UNKNOWN")
    return name, ack.detail


class LinkPool:
    """This node's links to its peers, keyed by address, on the component's transport."""

    def __init__(self, transport: Transport, window: int, lifetime_s: float,
                 wrap: Callable[[str, LinkSender], LinkSender] | None = None) -> None:
        self.transport = transport
        self._window = window
        self._lifetime_s = lifetime_s
        self._wrap = wrap  # hook: the test bed's emulated link (emulation.py)
        self.on_doubt: Callable[[str], None] | None = None  # hook: link_salt.py
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._links: dict[tuple[str, str], LinkSender] = {}

    def channel(self, address: str) -> grpc.aio.Channel:
        ch = self._channels.get(address)
        if ch is None:
            ch = self._channels[address] = self.transport.aio_channel(
                address, reconnect_cap_s=2.0)
        return ch

    def get(self, peer: str, address: str) -> LinkSender:
        link = self._links.get((peer, address))
        if link is None:
            link = StreamLink(na_grpc.NodeAgentStub(self.channel(address)), peer,
                              self._window, self._lifetime_s, self.on_doubt)
            if self._wrap is not None:
                link = self._wrap(peer, link)
            self._links[(peer, address)] = link
        return link

    async def close(self) -> None:
        for link in self._links.values():
            await link.close()
        for ch in self._channels.values():
            await ch.close()
