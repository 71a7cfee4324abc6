"""Per-process link salts: the handshake that keeps frame keys fresh across restarts.

Each agent process draws one random salt at start. Two nodes swap salts with
``NodeAgent.Hello`` (either side may ask; one call teaches both), and each
directed frame key mixes the sender's and the receiver's salt
(``LinkSecret.keys``). So a restarted sender seals under a key nobody used
before, and a restarted receiver, whose replay windows are gone, cannot open
anything recorded before it started (docs/architecture.md §12).

A node greets its peers in the background right after a Prepare, so frames
find their salts ready; a frame sealed for a peer whose salt is unknown (or
doubted, after its link broke) waits for one handshake on the compute thread.
A receiver keeps only its peer's *current* salt: a peer's older salts are
retired for good, so a replayed handshake cannot re-open an old key with a
fresh replay window.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from edgesplit.rpc.errors import InvalidRequest, TooLarge, Unavailable
from edgesplit.security.channel import SALT_LEN, FrameOpener, FrameSealer, LinkSecret
from edgesplit.security.errors import FrameRejected
from edgesplit.security.header import FrameHeader

log = logging.getLogger(__name__)
MAX_PEERS = 1024  # salts held; each peer names itself (its certificate, with mTLS)
RETIRED_PER_PEER = 64
# (peer, address) -> the peer's salt: one Hello call (wired in __main__).
Greeter = Callable[[str, str], Awaitable[bytes]]


class SaltBook:
    """This process's salt and what it knows of its peers' current ones."""

    def __init__(self, node_id: str, salt: bytes | None = None,
                 handshake_timeout_s: float = 5.0) -> None:
        self.node_id = node_id
        self.salt = salt or os.urandom(SALT_LEN)
        self.timeout_s = handshake_timeout_s
        self.greeter: Greeter | None = None
        self._peers: dict[str, bytes] = {}
        self._confirmed: set[str] = set()  # salts fit to seal with (not doubted)
        self._retired: dict[str, deque[bytes]] = {}
        self._lock = threading.Lock()  # the compute thread reads, the loop writes
        self._greeting: dict[str, asyncio.Future[bytes]] = {}
        try:
            self.loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self.loop = None

    # ---- what is known ------------------------------------------------------------
    def current(self, peer: str) -> bytes | None:
        return self._peers.get(peer)

    def learn(self, peer: str, salt: bytes) -> None:
        """``peer``'s current process has ``salt`` (from a Hello either way)."""
        if len(salt) != SALT_LEN:
            raise InvalidRequest(f"link salt must be {SALT_LEN} bytes")
        with self._lock:
            old = self._peers.get(peer)
            retired = self._retired.setdefault(peer, deque(maxlen=RETIRED_PER_PEER))
            if salt in retired:
                raise FrameRejected("stale_link", f"{peer} salt was retired (replayed hello?)")
            if old is None and len(self._peers) >= MAX_PEERS:
                raise TooLarge(f"link salts of {MAX_PEERS} peers held")
            if old is not None and old != salt:
                retired.append(old)  # the peer restarted: its old keys die here
                log.info("peer %s restarted (new link salt)", peer)
            self._peers[peer] = salt
            self._confirmed.add(peer)

    def doubt(self, peer: str) -> None:
        """The link to ``peer`` broke or it refused a frame as stale: check its
        salt with a Hello before sealing again (receiving keeps the salt)."""
        with self._lock:
            self._confirmed.discard(peer)

    # ---- handshakes ----------------------------------------------------------------
    async def greet(self, peer: str, address: str) -> bytes:
        """One Hello to ``peer`` at a time; returns its salt."""
        self.loop = self.loop or asyncio.get_running_loop()
        running = self._greeting.get(peer)
        if running is None:
            if self.greeter is None:
                raise Unavailable("no link handshake configured")
            running = self._greeting[peer] = asyncio.ensure_future(self.greeter(peer, address))
            running.add_done_callback(lambda _: self._greeting.pop(peer, None))
            running.add_done_callback(_quiet(peer))  # retrieved even if every waiter left
        salt = await asyncio.shield(running)
        self.learn(peer, salt)
        return salt

    def greet_soon(self, peers: dict[str, str]) -> None:
        """Greet peers not confirmed yet, in the background (after a Prepare)."""
        for peer, address in peers.items():
            if peer not in self._confirmed:
                task = asyncio.get_running_loop().create_task(self.greet(peer, address))
                task.add_done_callback(_quiet(peer))

    def sealing_salt(self, peer: str, address: str) -> bytes:
        """The peer's salt to seal with; on the compute thread, waits for a
        handshake when there is none (the event loop makes it)."""
        salt = self._peers.get(peer)
        if salt is not None and peer in self._confirmed:
            return salt
        loop = self.loop
        on_loop = loop is not None and _running_loop() is loop
        if loop is None or on_loop:
            raise Unavailable(f"no link handshake with {peer} yet")
        greeting = self.greet(peer, address)
        try:
            fut = asyncio.run_coroutine_threadsafe(greeting, loop)
        except RuntimeError as exc:  # the loop is closing: the agent is stopping
            greeting.close()
            raise Unavailable(f"no link handshake with {peer}: {exc}") from exc
        try:  # (the Hello has its own deadline: a timed-out wait leaves it to end)
            return fut.result(self.timeout_s)
        except Exception as exc:
            raise Unavailable(f"link handshake with {peer} failed: {exc}") from exc

    def close(self) -> None:
        """Stop handshakes in flight (the agent is stopping)."""
        for running in list(self._greeting.values()):
            running.cancel()

    # ---- per-epoch links -------------------------------------------------------------
    def link(self, my_private: X25519PrivateKey, peer_public: X25519PublicKey, peer: str,
             address: str, epoch: int) -> PeerLink:
        return PeerLink(address, self, LinkSecret.derive(my_private, peer_public,
                                                         self.node_id, peer, epoch))


class PeerLink:
    """Frame keys with one peer in one epoch, for whichever process lives are
    current: ``sealer.seal`` and ``opener.open_into`` as on a plain link."""

    def __init__(self, address: str, salts: SaltBook, secret: LinkSecret) -> None:
        self.address = address
        self.salts = salts
        self.secret = secret
        self.sealer = _Sealer(self)
        self.opener = _Opener(self)
        self._sealers: dict[bytes, FrameSealer] = {}  # peer salt -> sealer
        self._openers: dict[bytes, FrameOpener] = {}
        self._lock = threading.Lock()

    @property
    def peer(self) -> str:
        return self.secret.peer_node_id

    def sealer_for(self, peer_salt: bytes) -> FrameSealer:
        with self._lock:
            sealer = self._sealers.get(peer_salt)
            if sealer is None:
                self._sealers = {peer_salt: self.secret.keys(self.salts.salt, peer_salt).sealer()}
                sealer = self._sealers[peer_salt]
            return sealer

    def opener_for(self, peer_salt: bytes) -> FrameOpener:
        with self._lock:
            opener = self._openers.get(peer_salt)
            if opener is None:  # only the current salt opens: older ones die with it
                self._openers = {peer_salt: self.secret.keys(self.salts.salt, peer_salt).opener()}
                opener = self._openers[peer_salt]
            return opener


class _Sealer:
    __slots__ = ("link",)

    def __init__(self, link: PeerLink) -> None:
        self.link = link

    def seal(self, header: FrameHeader, plaintext: Any) -> tuple[bytes, bytes]:
        salt = self.link.salts.sealing_salt(self.link.peer, self.link.address)
        return self.link.sealer_for(salt).seal(header, plaintext)


class _Opener:
    __slots__ = ("link",)

    def __init__(self, link: PeerLink) -> None:
        self.link = link

    def open_into(self, nonce: bytes, header: FrameHeader, ciphertext: Any, out: Any) -> None:
        salt = self.link.salts.current(self.link.peer)
        if salt is None:
            raise FrameRejected("stale_link", f"no link handshake with {self.link.peer}'s "
                                              "current process")
        self.link.opener_for(salt).open_into(nonce, header, ciphertext, out)


def greeter(node_id: str, salts: SaltBook, links: Any, timeout_s: float) -> Greeter:
    """Hello over the node's own link channels (its certificate); checks the
    answer comes from the node it asked. A link that breaks, or a frame the
    peer refuses as stale, makes the salt doubtful (``LinkPool.on_doubt``)."""
    from edgesplit.v1 import node_agent_pb2 as na
    from edgesplit.v1 import node_agent_pb2_grpc as na_grpc

    async def hello(peer: str, address: str) -> bytes:
        stub = na_grpc.NodeAgentStub(links.channel(address))
        reply = await stub.Hello(na.LinkHello(node_id=node_id, salt=salts.salt),
                                 timeout=timeout_s)
        if reply.node_id != peer:
            raise Unavailable(f"{address} answers as {reply.node_id!r}, not {peer!r}")
        return bytes(reply.salt)

    links.on_doubt = salts.doubt
    return hello


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _quiet(peer: str) -> Callable[[asyncio.Future[bytes]], None]:
    def done(task: asyncio.Future[bytes]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.info("link handshake with %s failed (retried on the first frame): %s",
                     peer, task.exception())
    return done
