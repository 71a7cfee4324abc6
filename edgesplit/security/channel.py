"""Per-link AEAD for activation frames.

Each directed link (sender -> receiver) in an epoch gets its own key, derived
with X25519 + HKDF-SHA256 from the two nodes' agreement keys and a fresh
random salt of each side's *process* (``SALT_LEN`` bytes, drawn at start and
swapped in a handshake): a restarted sender never seals under a key it used
before (so its counter may start at 0 again), and a restarted receiver never
opens a frame recorded before it started, although its replay windows are
gone (docs/architecture.md §12). Frames are sealed
with AES-256-GCM (or ChaCha20-Poly1305 on CPUs without AES-NI) under a 96-bit
nonce ``prefix32 || counter64``; the header (session, step, hop, epoch, src,
dst, shape, dtype, chunk) is the associated data, so a frame only opens on the
node, hop and step it was sealed for. A sliding window over counters (as in
IPsec / WireGuard) refuses replays while tolerating reordering.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Final, Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from edgesplit.security.errors import FrameRejected, KeyMaterialError
from edgesplit.security.header import FrameHeader, length_prefixed
from edgesplit.security.keys import public_bytes

__all__ = [
    "DEFAULT_WINDOW",
    "NONCE_LEN",
    "SALT_LEN",
    "AeadName",
    "FrameHeader",
    "FrameOpener",
    "FrameSealer",
    "LinkKeys",
    "LinkSecret",
]

AeadName = Literal["aes-256-gcm", "chacha20-poly1305"]
NONCE_LEN: Final = 12
TAG_LEN: Final = 16  # both AEADs append a 16-byte tag
KEY_LEN: Final = 32
SALT_LEN: Final = 16  # per-process link salt
DEFAULT_WINDOW: Final = 1024  # frames a link may reorder by before old ones count as replays
_COUNTER_LIMIT: Final = 1 << 64
_LINK_DOMAIN: Final = b"edgesplit.v1.link\0"


def _aead(name: AeadName, key: bytes) -> AESGCM | ChaCha20Poly1305:
    if len(key) != KEY_LEN:
        raise KeyMaterialError(f"link key must be {KEY_LEN} bytes")
    if name == "aes-256-gcm":
        return AESGCM(key)
    if name == "chacha20-poly1305":
        return ChaCha20Poly1305(key)
    raise ValueError(f"unknown AEAD {name!r}")


class FrameSealer:
    """Seals frames from one sender under one key. Thread-safe; keep one per link key.

    Nonces are ``prefix32 || counter64``. A key is unique to one sender
    process (its salt is in the key), so the counter alone never repeats under
    it; the random prefix only separates two sealers made on one key by mistake.
    """

    def __init__(
        self,
        key: bytes,
        sender_id: str,
        *,
        aead: AeadName = "aes-256-gcm",
        receiver_id: str | None = None,
    ) -> None:
        self._cipher = _aead(aead, key)  # built once: re-keying per frame costs more than sealing
        self.sender_id = sender_id
        self.receiver_id = receiver_id
        self.prefix = os.urandom(4)
        # next() on itertools.count is atomic under the GIL: no lock on the hot path.
        self._counter = itertools.count()

    def seal(self, header: FrameHeader, plaintext: bytes | memoryview) -> tuple[bytes, bytes]:
        """Return ``(nonce, ciphertext_with_tag)``."""
        if header.src != self.sender_id or (
            self.receiver_id is not None and header.dst != self.receiver_id
        ):
            raise ValueError(f"header {header.src}->{header.dst} does not match this link")
        ctr = next(self._counter)
        if ctr >= _COUNTER_LIMIT:
            # A repeated nonce under GCM leaks the authentication key; stop instead.
            raise OverflowError("nonce counter exhausted; derive a new link key")
        nonce = self.prefix + ctr.to_bytes(8, "big")
        return nonce, self._cipher.encrypt(nonce, plaintext, header.encode())


class _ReplayWindow:
    """Bitmap of the last ``size`` counters below the highest accepted one (RFC 6479 idea)."""

    __slots__ = ("bits", "mask", "size", "top")

    def __init__(self, size: int) -> None:
        self.top = -1  # highest counter accepted so far
        self.bits = 0  # bit i set <=> counter top - i accepted
        self.size = size
        self.mask = (1 << size) - 1

    def check(self, ctr: int) -> str | None:
        """Why ``ctr`` must be refused, or None."""
        if ctr > self.top:
            return None
        offset = self.top - ctr
        if offset >= self.size:
            return f"counter {ctr} older than window (top {self.top})"
        if (self.bits >> offset) & 1:
            return f"counter {ctr} already seen"
        return None

    def mark(self, ctr: int) -> None:
        if ctr > self.top:
            shift = ctr - self.top
            self.bits = ((self.bits << shift) | 1) & self.mask if shift < self.size else 1
            self.top = ctr
        else:
            self.bits |= 1 << (self.top - ctr)


class FrameOpener:
    """Opens frames on one receiving link key; refuses tampered, replayed, misrouted frames.

    ``node_id`` / ``sender_id`` / ``epoch``, when given, are checked against the
    header before decrypting so a misdelivered frame is reported as ``misrouted``
    rather than as a decryption failure. Whether ``hop`` fits this node's
    assignment is the caller's check: one node may sit at several hops.
    """

    def __init__(
        self,
        key: bytes,
        *,
        aead: AeadName = "aes-256-gcm",
        node_id: str | None = None,
        sender_id: str | None = None,
        epoch: int | None = None,
        window: int = DEFAULT_WINDOW,
        max_senders: int = 64,
    ) -> None:
        if window < 1 or max_senders < 1:
            raise ValueError("window and max_senders must be positive")
        self._cipher = _aead(aead, key)
        self.node_id = node_id
        self.sender_id = sender_id
        self.epoch = epoch
        self._window = window
        self._max_senders = max_senders
        self._windows: OrderedDict[bytes, _ReplayWindow] = OrderedDict()
        # Prefixes evicted from the LRU: refused for good, since their window is gone.
        self._retired: set[bytes] = set()
        self._lock = threading.Lock()  # open() may run on executor threads

    def _replay_reason(self, prefix: bytes, ctr: int) -> str | None:
        if prefix in self._retired:
            return "sender prefix retired"
        win = self._windows.get(prefix)
        return None if win is None else win.check(ctr)

    def open(self, nonce: bytes, header: FrameHeader, ciphertext: bytes | memoryview) -> bytes:
        plaintext = bytearray(max(len(ciphertext) - TAG_LEN, 0))
        self.open_into(nonce, header, ciphertext, plaintext)
        return bytes(plaintext)

    def open_into(self, nonce: bytes, header: FrameHeader, ciphertext: bytes | memoryview,
                  out: bytearray | memoryview) -> None:
        """Like :meth:`open`, decrypting into ``out`` (``len(ciphertext) - 16``
        bytes) instead of a new buffer: the frame's bytes are written once."""
        if len(nonce) != NONCE_LEN:
            raise FrameRejected("bad_header", f"nonce must be {NONCE_LEN} bytes")
        if (
            (self.node_id is not None and header.dst != self.node_id)
            or (self.sender_id is not None and header.src != self.sender_id)
            or (self.epoch is not None and header.epoch != self.epoch)
        ):
            raise FrameRejected(
                "misrouted", f"{header.src}->{header.dst} epoch {header.epoch} on this link"
            )
        if len(ciphertext) < TAG_LEN or len(out) != len(ciphertext) - TAG_LEN:
            raise FrameRejected("bad_header", "ciphertext shorter than its tag or buffer size")
        prefix, ctr = nonce[:4], int.from_bytes(nonce[4:], "big")
        # Cheap pre-check: don't spend AEAD work on an obvious replay.
        reason = self._replay_reason(prefix, ctr)
        if reason is not None:
            raise FrameRejected("replay", reason)
        try:
            self._cipher.decrypt_into(nonce, ciphertext, header.encode(), out)
        except InvalidTag:
            raise FrameRejected("decrypt_failed", "authentication failed") from None
        # Only authenticated frames touch the window, so forged nonces cannot
        # advance it and lock the real sender out.
        with self._lock:
            reason = self._replay_reason(prefix, ctr)  # again: a racing thread may have won
            if reason is not None:
                raise FrameRejected("replay", reason)
            win = self._windows.get(prefix)
            if win is None:
                win = self._windows[prefix] = _ReplayWindow(self._window)
                if len(self._windows) > self._max_senders:
                    old, _ = self._windows.popitem(last=False)
                    self._retired.add(old)
            else:
                self._windows.move_to_end(prefix)
            win.mark(ctr)


@dataclass(frozen=True, slots=True)
class LinkSecret:
    """One link (two nodes) in one epoch, before the per-process salts: the
    HKDF pseudo-random key extracted from the X25519 shared secret, computed
    once per epoch so that a peer's new salt costs two HKDF-Expands only."""

    my_node_id: str
    peer_node_id: str
    epoch: int
    aead: AeadName
    prk: bytes = field(repr=False)

    @classmethod
    def derive(
        cls,
        my_private: X25519PrivateKey,
        peer_public: X25519PublicKey,
        my_node_id: str,
        peer_node_id: str,
        epoch: int,
        *,
        aead: AeadName = "aes-256-gcm",
    ) -> LinkSecret:
        if my_node_id == peer_node_id:
            raise ValueError("a link needs two distinct node ids")
        try:
            shared = my_private.exchange(peer_public)
        except ValueError as exc:  # low-order peer point: all-zero shared secret
            raise KeyMaterialError(f"unusable peer key for {peer_node_id!r}") from exc
        mine, theirs = public_bytes(my_private), public_bytes(peer_public)
        # HKDF-Extract, salted with both public keys (order-independent) so the
        # key is tied to this key pair, not only to the shared secret.
        h = hmac.HMAC(hashlib.sha256(min(mine, theirs) + max(mine, theirs)).digest(),
                      hashes.SHA256())
        h.update(shared)
        return cls(my_node_id, peer_node_id, epoch, aead, h.finalize())

    def _directed(self, sender: str, receiver: str, sender_salt: bytes,
                  receiver_salt: bytes) -> bytes:
        if len(sender_salt) != SALT_LEN or len(receiver_salt) != SALT_LEN:
            raise KeyMaterialError(f"link salts must be {SALT_LEN} bytes")
        # Ordered ids + epoch + cipher + both processes' salts in info: each
        # direction, epoch, cipher and pair of process lives gets an unrelated key.
        info = b"".join((_LINK_DOMAIN, length_prefixed(sender), length_prefixed(receiver),
                         self.epoch.to_bytes(8, "big"), length_prefixed(self.aead),
                         sender_salt, receiver_salt))
        return HKDFExpand(hashes.SHA256(), KEY_LEN, info).derive(self.prk)

    def keys(self, my_salt: bytes, peer_salt: bytes) -> LinkKeys:
        """The two directional keys between this process (``my_salt``) and the
        peer's current process (``peer_salt``)."""
        me, peer = self.my_node_id, self.peer_node_id
        return LinkKeys(me, peer, self.epoch, self.aead,
                        send_key=self._directed(me, peer, my_salt, peer_salt),
                        recv_key=self._directed(peer, me, peer_salt, my_salt))


@dataclass(frozen=True, slots=True)
class LinkKeys:
    """The two directional keys of one link in one epoch between two process
    lives (their salts), as seen from ``my_node_id``: ``LinkSecret.keys``."""

    my_node_id: str
    peer_node_id: str
    epoch: int
    aead: AeadName
    send_key: bytes = field(repr=False)  # my -> peer
    recv_key: bytes = field(repr=False)  # peer -> my

    def sealer(self) -> FrameSealer:
        return FrameSealer(
            self.send_key, self.my_node_id, aead=self.aead, receiver_id=self.peer_node_id
        )

    def opener(self, *, window: int = DEFAULT_WINDOW) -> FrameOpener:
        return FrameOpener(
            self.recv_key,
            aead=self.aead,
            node_id=self.my_node_id,
            sender_id=self.peer_node_id,
            epoch=self.epoch,
            window=window,
        )
