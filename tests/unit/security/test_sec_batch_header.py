"""Batched frames: one seal binds every session's header (issue 11)."""

from __future__ import annotations

import dataclasses
import os

import pytest

from edgesplit.security.channel import FrameOpener, FrameSealer
from edgesplit.security.errors import FrameRejected
from edgesplit.security.header import BatchHeader, FrameHeader

KEY = os.urandom(32)


def _header(session: str, step: int = 4, start: int = 20, rows: int = 1) -> FrameHeader:
    return FrameHeader(session, step, 1, 7, "node-a", "node-b", (1, rows, 8), "float32",
                       entry="node-a", start_pos=start)


def _sealed() -> tuple[BatchHeader, bytes, bytes, bytes]:
    batch = BatchHeader((_header("s1"), _header("s2", step=9, start=40, rows=2)))
    data = os.urandom(3 * 8 * 4)
    nonce, ct = FrameSealer(KEY, "node-a", receiver_id="node-b").seal(batch, data)
    return batch, data, nonce, ct


def _opener() -> FrameOpener:
    return FrameOpener(KEY, node_id="node-b", sender_id="node-a", epoch=7)


def test_batch_opens_with_its_headers() -> None:
    batch, data, nonce, ct = _sealed()
    assert _opener().open(nonce, batch, ct) == data


@pytest.mark.parametrize("change", [
    lambda hs: (hs[1], hs[0]),  # reordered
    lambda hs: hs[:1],  # a session dropped
    lambda hs: (hs[0], dataclasses.replace(hs[1], start_pos=41)),  # shifted in the cache
    lambda hs: (dataclasses.replace(hs[0], session_id="s3"), hs[1]),  # another session
])
def test_any_header_change_fails_to_open(change: object) -> None:
    batch, _, nonce, ct = _sealed()
    forged = BatchHeader(tuple(change(batch.headers)))  # type: ignore[operator]
    with pytest.raises(FrameRejected) as exc:
        _opener().open(nonce, forged, ct)
    assert exc.value.reason == "decrypt_failed"


def test_a_batch_never_encodes_as_a_single_frame() -> None:
    h = _header("s1")
    assert BatchHeader((h,)).encode() != h.encode()


@pytest.mark.parametrize("headers", [
    (),
    (_header("s1"), dataclasses.replace(_header("s2"), hop=2)),  # another hop
    (_header("s1"), dataclasses.replace(_header("s2"), dst="node-c")),  # another link
    (_header("s1"), _header("s1", step=5)),  # one session twice
    (dataclasses.replace(_header("s1"), chunks=2),),  # chunked
])
def test_inconsistent_batches_are_bad_headers(headers: tuple[FrameHeader, ...]) -> None:
    with pytest.raises(FrameRejected) as exc:
        BatchHeader(headers)
    assert exc.value.reason == "bad_header"
