"""Per-shard encryption and shard-key wrapping.

Every shard gets a fresh random AES-256-GCM key, so the registry holds only
ciphertext and a node can read only the shards whose keys were wrapped to its
X25519 key inside its signed assignment.

Blob format (chunked, so hundreds of MB stream through bounded memory and no
single AEAD call nears GCM's ~64 GiB / cryptography's 2**31-byte limits)::

    b"ESH1" || chunk_size:u32 || chunk_0 || chunk_1 || ... || chunk_last

Chunk ``i`` is ``AESGCM(key).encrypt(nonce=i:u96, data_i, aad)`` with
``aad = domain || shard_id || header || i:u64 || final:u8``. The index in the
nonce and AAD stops reordering; the ``final`` flag (the STREAM construction)
stops truncation at a chunk boundary. Counter nonces are safe because each key
encrypts exactly one shard.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from edgesplit.security.errors import KeyUnwrapError, ShardDecryptError
from edgesplit.security.header import length_prefixed
from edgesplit.security.keys import public_bytes

__all__ = [
    "CHUNK_SIZE",
    "SHARD_KEY_LEN",
    "ShardDecryptor",
    "ShardEncryptor",
    "decrypt_shard",
    "encrypt_shard",
    "unwrap_key",
    "wrap_key",
]

CHUNK_SIZE: Final = 1 << 20
SHARD_KEY_LEN: Final = 32
_TAG: Final = 16
_MAGIC: Final = b"ESH1"
_HEADER: Final = struct.Struct(">4sI")
_MAX_CHUNK: Final = 64 << 20  # refuse absurd chunk sizes from a corrupt header before buffering
_SHARD_DOMAIN: Final = b"edgesplit.v1.shard\0"
_WRAP_DOMAIN: Final = b"edgesplit.v1.shard-key-wrap\0"
_WRAP_VERSION: Final = b"\x01"
_WRAPPED_LEN: Final = 1 + 32 + SHARD_KEY_LEN + _TAG


def _check_chunk_size(chunk_size: int) -> None:
    if not 0 < chunk_size <= _MAX_CHUNK:
        raise ValueError(f"chunk_size must be in 1..{_MAX_CHUNK}")


def _nonce(index: int) -> bytes:
    return index.to_bytes(12, "big")


class _ChunkCipher:
    """The per-chunk seal/open shared by the streaming and one-shot paths."""

    def __init__(self, key: bytes, shard_id: str, header: bytes) -> None:
        if len(key) != SHARD_KEY_LEN:
            raise ShardDecryptError(f"shard key must be {SHARD_KEY_LEN} bytes")
        self._aead = AESGCM(key)
        self._aad_prefix = _SHARD_DOMAIN + length_prefixed(shard_id) + header

    def _aad(self, index: int, final: bool) -> bytes:
        return self._aad_prefix + struct.pack(">QB", index, final)

    def seal(self, index: int, final: bool, data: bytes | memoryview) -> bytes:
        return self._aead.encrypt(_nonce(index), data, self._aad(index, final))

    def open(self, index: int, final: bool, data: bytes | memoryview) -> bytes:
        try:
            return self._aead.decrypt(_nonce(index), data, self._aad(index, final))
        except InvalidTag:
            raise ShardDecryptError(
                f"chunk {index} failed authentication (wrong key or shard id, corrupt or truncated)"
            ) from None


class ShardEncryptor:
    """Streaming encryption under a fresh key (``.key``); feed ``update``, end with ``finalize``."""

    def __init__(self, shard_id: str, *, chunk_size: int = CHUNK_SIZE) -> None:
        _check_chunk_size(chunk_size)
        self.key = AESGCM.generate_key(bit_length=256)  # never caller-chosen: no nonce reuse
        self._size = chunk_size
        header = _HEADER.pack(_MAGIC, chunk_size)
        self._cipher = _ChunkCipher(self.key, shard_id, header)
        self._pending = header  # emitted with the first output
        self._buf = bytearray()
        self._index = 0

    def update(self, data: bytes | memoryview) -> bytes:
        self._buf += data
        out = [self._pending]
        self._pending = b""
        # Strictly greater: the last full chunk is held back until we know
        # whether it is final (its flag is authenticated).
        while len(self._buf) > self._size:
            out.append(self._cipher.seal(self._index, False, bytes(self._buf[: self._size])))
            del self._buf[: self._size]  # bytearray front deletion is amortised O(1)
            self._index += 1
        return b"".join(out)

    def finalize(self) -> bytes:
        out = self._pending + self._cipher.seal(self._index, True, bytes(self._buf))
        self._pending, self._buf = b"", bytearray()
        return out


class ShardDecryptor:
    """Streaming decryption: ``update`` returns verified plaintext as chunks complete.

    Plaintext returned before ``finalize`` is authentic but may be followed by a
    failure (truncation is only detectable at the end): write it to a temp file
    and only publish the shard after ``finalize`` returns.
    """

    def __init__(self, key: bytes, shard_id: str) -> None:
        self._key, self._shard_id = key, shard_id
        self._cipher: _ChunkCipher | None = None
        self._size = 0
        self._buf = bytearray()
        self._index = 0

    def _start(self) -> bool:
        if self._cipher is None:
            if len(self._buf) < _HEADER.size:
                return False
            header = bytes(self._buf[: _HEADER.size])
            magic, size = _HEADER.unpack(header)
            if magic != _MAGIC or not 0 < size <= _MAX_CHUNK:
                raise ShardDecryptError("not an encrypted shard (bad header)")
            self._cipher = _ChunkCipher(self._key, self._shard_id, header)
            self._size = size
            del self._buf[: _HEADER.size]
        return True

    def update(self, data: bytes | memoryview) -> bytes:
        self._buf += data
        if not self._start():
            return b""
        assert self._cipher is not None
        out = []
        step = self._size + _TAG
        while len(self._buf) > step:  # held back as in ShardEncryptor.update
            out.append(self._cipher.open(self._index, False, bytes(self._buf[:step])))
            del self._buf[:step]
            self._index += 1
        return b"".join(out)

    def finalize(self) -> bytes:
        if not self._start() or not _TAG <= len(self._buf) <= self._size + _TAG:
            raise ShardDecryptError("encrypted shard truncated")
        assert self._cipher is not None
        out = self._cipher.open(self._index, True, bytes(self._buf))
        self._buf = bytearray()
        return out


def _chunks(view: memoryview, size: int) -> Iterator[tuple[int, bool, memoryview]]:
    count = max(1, -(-len(view) // size))  # an empty shard is one empty final chunk
    for i in range(count):
        yield i, i == count - 1, view[i * size : (i + 1) * size]


def encrypt_shard(
    data: bytes | memoryview, shard_id: str, *, chunk_size: int = CHUNK_SIZE
) -> tuple[bytes, bytes]:
    """Encrypt a whole shard under a fresh key; returns ``(key, blob)``.

    ``shard_id`` (its name or plaintext digest) is bound as associated data, so
    the blob of one shard cannot be served as another.
    """
    _check_chunk_size(chunk_size)
    key = AESGCM.generate_key(bit_length=256)
    header = _HEADER.pack(_MAGIC, chunk_size)
    cipher = _ChunkCipher(key, shard_id, header)
    # Slices a memoryview rather than copying hundreds of MB through a buffer.
    parts = [header] + [cipher.seal(i, f, c) for i, f, c in _chunks(memoryview(data), chunk_size)]
    return key, b"".join(parts)


def decrypt_shard(key: bytes, blob: bytes | memoryview, shard_id: str) -> bytes:
    """Inverse of encrypt_shard; raises ShardDecryptError on any mismatch."""
    view = memoryview(blob)
    if len(view) < _HEADER.size:
        raise ShardDecryptError("encrypted shard truncated")
    header = bytes(view[: _HEADER.size])
    magic, size = _HEADER.unpack(header)
    if magic != _MAGIC or not 0 < size <= _MAX_CHUNK:
        raise ShardDecryptError("not an encrypted shard (bad header)")
    cipher = _ChunkCipher(key, shard_id, header)
    return b"".join(cipher.open(i, f, c) for i, f, c in _chunks(view[_HEADER.size :], size + _TAG))


def _kek(shared: bytes, eph_pub: bytes, rcpt_pub: bytes, context: bytes) -> AESGCM:
    # Salt binds both public keys; info binds the caller's context (node, epoch, shard).
    kdf = HKDF(hashes.SHA256(), 32, eph_pub + rcpt_pub, _WRAP_DOMAIN + context)
    return AESGCM(kdf.derive(shared))


def wrap_key(shard_key: bytes, recipient_public: X25519PublicKey, context: bytes) -> bytes:
    """Encrypt ``shard_key`` to one recipient (ECIES: ephemeral X25519 + HKDF + AES-GCM).

    ``context`` (e.g. node id, epoch, shard digest) must be given again to unwrap.
    Output: ``version:1 || ephemeral_public:32 || ciphertext+tag:48``.
    """
    if len(shard_key) != SHARD_KEY_LEN:
        raise ValueError(f"shard key must be {SHARD_KEY_LEN} bytes")
    eph = X25519PrivateKey.generate()
    eph_pub, rcpt_pub = public_bytes(eph), public_bytes(recipient_public)
    kek = _kek(eph.exchange(recipient_public), eph_pub, rcpt_pub, context)
    # A zero nonce is safe: the KEK comes from a fresh ephemeral key and seals once.
    ct = kek.encrypt(bytes(12), shard_key, _WRAP_VERSION + eph_pub + context)
    return _WRAP_VERSION + eph_pub + ct


def unwrap_key(wrapped: bytes, recipient_private: X25519PrivateKey, context: bytes) -> bytes:
    """Inverse of wrap_key; KeyUnwrapError if not for this key/context or altered."""
    if len(wrapped) != _WRAPPED_LEN or wrapped[:1] != _WRAP_VERSION:
        raise KeyUnwrapError("malformed wrapped key")
    eph_pub, ct = wrapped[1:33], wrapped[33:]
    try:
        shared = recipient_private.exchange(X25519PublicKey.from_public_bytes(eph_pub))
        kek = _kek(shared, eph_pub, public_bytes(recipient_private), context)
        return kek.decrypt(bytes(12), ct, _WRAP_VERSION + eph_pub + context)
    except (InvalidTag, ValueError):  # ValueError: low-order ephemeral point
        raise KeyUnwrapError("wrapped key is not for this recipient or context") from None
