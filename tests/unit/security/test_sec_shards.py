"""Chunked shard encryption and shard-key wrapping."""

from __future__ import annotations

import os

import pytest

from edgesplit.security import keys
from edgesplit.security.errors import KeyUnwrapError, ShardDecryptError
from edgesplit.security.shards import (
    CHUNK_SIZE,
    ShardDecryptor,
    ShardEncryptor,
    decrypt_shard,
    encrypt_shard,
    unwrap_key,
    wrap_key,
)

SMALL = 64  # small chunks keep multi-chunk cases fast
SID = "sha256:3f1c...layer-07"


@pytest.mark.parametrize("size", [0, 1, SMALL - 1, SMALL, SMALL + 1, 5 * SMALL, 5 * SMALL + 7])
def test_round_trip_sizes(size: int) -> None:
    data = os.urandom(size)
    key, blob = encrypt_shard(data, SID, chunk_size=SMALL)
    assert len(key) == 32
    assert decrypt_shard(key, blob, SID) == data
    # A plaintext of a few bytes can occur in random ciphertext by chance;
    # from 16 bytes on, finding it would mean it was stored in the clear.
    assert len(data) < 16 or data not in blob


def test_round_trip_default_chunk_size_multi_mib() -> None:
    data = os.urandom(2 * CHUNK_SIZE + 12345)
    key, blob = encrypt_shard(data, SID)
    assert decrypt_shard(key, blob, SID) == data


def test_fresh_key_per_shard() -> None:
    k1, b1 = encrypt_shard(b"same", SID)
    k2, b2 = encrypt_shard(b"same", SID)
    assert k1 != k2 and b1 != b2


@pytest.mark.parametrize("piece", [1, 7, SMALL, SMALL + 16, 1000])
def test_streaming_matches_one_shot(piece: int) -> None:
    data = os.urandom(7 * SMALL + 3)
    enc = ShardEncryptor(SID, chunk_size=SMALL)
    blob = b"".join(enc.update(data[i : i + piece]) for i in range(0, len(data), piece))
    blob += enc.finalize()
    assert decrypt_shard(enc.key, blob, SID) == data  # one-shot reads streamed output
    _, one_shot = encrypt_shard(data, SID, chunk_size=SMALL)
    dec = ShardDecryptor(enc.key, SID)
    out = b"".join(dec.update(blob[i : i + piece]) for i in range(0, len(blob), piece))
    assert out + dec.finalize() == data
    assert len(one_shot) == len(blob)


def test_wrong_key_or_shard_id_fails() -> None:
    key, blob = encrypt_shard(b"weights" * 100, SID, chunk_size=SMALL)
    with pytest.raises(ShardDecryptError):
        decrypt_shard(os.urandom(32), blob, SID)
    with pytest.raises(ShardDecryptError):
        decrypt_shard(key, blob, "sha256:another-shard")


def test_tampering_truncation_and_reordering_fail() -> None:
    data = os.urandom(4 * SMALL)
    key, blob = encrypt_shard(data, SID, chunk_size=SMALL)
    step = SMALL + 16
    flipped = bytearray(blob)
    flipped[8 + step + 3] ^= 1
    header, body = blob[:8], blob[8:]
    chunks = [body[i : i + step] for i in range(0, len(body), step)]
    cases = {
        "flipped": bytes(flipped),
        "dropped last chunk": header + b"".join(chunks[:-1]),
        "cut mid chunk": blob[:-5],
        "swapped": header + chunks[1] + chunks[0] + b"".join(chunks[2:]),
        "bad magic": b"XXXX" + blob[4:],
        "empty": b"",
    }
    for name, bad in cases.items():
        with pytest.raises(ShardDecryptError):
            decrypt_shard(key, bad, SID)
        dec = ShardDecryptor(key, SID)
        with pytest.raises(ShardDecryptError):
            dec.update(bad)
            dec.finalize()
        assert name


def test_wrap_unwrap_round_trip() -> None:
    node = keys.generate_agreement_key()
    shard_key, _ = encrypt_shard(b"x", SID)
    ctx = b"node-a|epoch=7|" + SID.encode()
    wrapped = wrap_key(shard_key, node.public_key(), ctx)
    assert len(wrapped) == 81 and shard_key not in wrapped
    assert unwrap_key(wrapped, node, ctx) == shard_key
    assert wrap_key(shard_key, node.public_key(), ctx) != wrapped  # fresh ephemeral each time


def test_unwrap_by_another_recipient_or_context_or_after_tampering_fails() -> None:
    node, other = keys.generate_agreement_key(), keys.generate_agreement_key()
    shard_key = os.urandom(32)
    wrapped = wrap_key(shard_key, node.public_key(), b"ctx")
    with pytest.raises(KeyUnwrapError):
        unwrap_key(wrapped, other, b"ctx")
    with pytest.raises(KeyUnwrapError):
        unwrap_key(wrapped, node, b"ctx2")
    for pos in (0, 5, 40, 80):
        bad = bytearray(wrapped)
        bad[pos] ^= 1
        with pytest.raises(KeyUnwrapError):
            unwrap_key(bytes(bad), node, b"ctx")
    with pytest.raises(KeyUnwrapError):
        unwrap_key(wrapped[:-1], node, b"ctx")
    with pytest.raises(ValueError):
        wrap_key(b"short", node.public_key(), b"ctx")
