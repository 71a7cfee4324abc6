"""Per-link frame AEAD: key derivation, AAD binding, replay window, nonces."""

from __future__ import annotations

import dataclasses
import itertools
import os
import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgesplit.security import keys
from edgesplit.security.channel import (
    SALT_LEN,
    AeadName,
    FrameOpener,
    FrameSealer,
    LinkKeys,
    LinkSecret,
)
from edgesplit.security.errors import FrameRejected, KeyMaterialError
from edgesplit.security.header import FrameHeader

A, B = keys.generate_agreement_key(), keys.generate_agreement_key()
HDR = FrameHeader(
    session_id="sess-1",
    step=3,
    hop=1,
    epoch=7,
    src="node-a",
    dst="node-b",
    shape=(1, 1, 64),
    dtype="float16",
)
DATA = os.urandom(4096)
SALT_A, SALT_B = os.urandom(SALT_LEN), os.urandom(SALT_LEN)  # the two processes' salts


def _pair(aead: AeadName = "aes-256-gcm", epoch: int = 7, salt_a: bytes = SALT_A,
          salt_b: bytes = SALT_B) -> tuple[LinkKeys, LinkKeys]:
    ab = LinkSecret.derive(A, B.public_key(), "node-a", "node-b", epoch, aead=aead)
    ba = LinkSecret.derive(B, A.public_key(), "node-b", "node-a", epoch, aead=aead)
    return ab.keys(salt_a, salt_b), ba.keys(salt_b, salt_a)


def _reason(exc: pytest.ExceptionInfo[FrameRejected]) -> str:
    return exc.value.reason


@pytest.mark.parametrize("aead", ["aes-256-gcm", "chacha20-poly1305"])
def test_round_trip_both_aeads(aead: AeadName) -> None:
    a, b = _pair(aead)
    nonce, ct = a.sealer().seal(HDR, DATA)
    assert len(nonce) == 12 and len(ct) == len(DATA) + 16
    assert b.opener().open(nonce, HDR, ct) == DATA


def test_both_ends_derive_matching_directional_keys() -> None:
    a, b = _pair()
    assert a.send_key == b.recv_key and a.recv_key == b.send_key
    assert a.send_key != a.recv_key
    assert repr(a.send_key) not in repr(a) and repr(a.recv_key) not in repr(a)


def test_keys_differ_per_epoch_and_aead() -> None:
    a7, _ = _pair(epoch=7)
    a8, _ = _pair(epoch=8)
    chacha, _ = _pair("chacha20-poly1305")
    assert len({a7.send_key, a8.send_key, chacha.send_key}) == 3


def test_a_to_b_key_cannot_open_b_to_a_frames() -> None:
    a, b = _pair()
    back = dataclasses.replace(HDR, src="node-b", dst="node-a")
    nonce, ct = b.sealer().seal(back, DATA)
    assert a.opener().open(nonce, back, ct) == DATA
    # Node a's own outbound key, used as if it were the inbound one, must fail.
    wrong = FrameOpener(a.send_key)
    with pytest.raises(FrameRejected) as exc:
        wrong.open(nonce, back, ct)
    assert _reason(exc) == "decrypt_failed"


def test_a_third_node_cannot_derive_the_link_key() -> None:
    c = keys.generate_agreement_key()
    a, _ = _pair()
    mallory = LinkSecret.derive(c, A.public_key(), "node-b", "node-a", 7).keys(SALT_B, SALT_A)
    nonce, ct = a.sealer().seal(HDR, DATA)
    with pytest.raises(FrameRejected):
        mallory.opener().open(nonce, HDR, ct)


AAD_CHANGES: list[dict[str, Any]] = [
    {"session_id": "sess-2"},
    {"step": 4},
    {"hop": 2},
    {"epoch": 8},
    {"src": "node-c"},
    {"dst": "node-c"},
    {"shape": (1, 2, 64)},
    {"shape": (1, 1, 64, 1)},
    {"dtype": "bfloat16"},
    {"chunks": 2},
    {"chunk": 1, "chunks": 2},
    {"entry": "node-z"},
    {"start_pos": 9},
]


@pytest.mark.parametrize("changes", AAD_CHANGES)
def test_every_header_field_is_authenticated(changes: dict[str, Any]) -> None:
    a, b = _pair()
    nonce, ct = a.sealer().seal(HDR, DATA)
    changed = dataclasses.replace(HDR, **changes)
    # A bare opener (no routing checks) shows the AEAD itself binds the field.
    with pytest.raises(FrameRejected) as exc:
        FrameOpener(b.recv_key).open(nonce, changed, ct)
    assert _reason(exc) == "decrypt_failed"
    # The link opener also refuses; dst/src/epoch are caught earlier as misrouted.
    with pytest.raises(FrameRejected) as exc:
        b.opener().open(nonce, changed, ct)
    routing = {"src", "dst", "epoch"} & changes.keys()
    expected = "misrouted" if routing else "decrypt_failed"
    assert _reason(exc) == expected


def test_flipped_ciphertext_or_tag_bit_fails() -> None:
    a, b = _pair()
    nonce, ct = a.sealer().seal(HDR, DATA)
    opener = b.opener()
    for pos in (0, len(ct) // 2, len(ct) - 1):  # body start, middle, tag
        bad = bytearray(ct)
        bad[pos] ^= 0x01
        with pytest.raises(FrameRejected) as exc:
            opener.open(nonce, HDR, bytes(bad))
        assert _reason(exc) == "decrypt_failed"
    bad_nonce = bytes([nonce[0] ^ 1]) + nonce[1:]
    with pytest.raises(FrameRejected):
        opener.open(bad_nonce, HDR, ct)
    assert opener.open(nonce, HDR, ct) == DATA  # failures did not poison the window


def test_replayed_frame_is_rejected() -> None:
    a, b = _pair()
    nonce, ct = a.sealer().seal(HDR, DATA)
    opener = b.opener()
    opener.open(nonce, HDR, ct)
    with pytest.raises(FrameRejected) as exc:
        opener.open(nonce, HDR, ct)
    assert _reason(exc) == "replay"


def test_out_of_order_within_window_accepted_older_than_window_rejected() -> None:
    a, b = _pair()
    sealer, opener = a.sealer(), b.opener(window=64)
    frames = [sealer.seal(HDR, b"x%d" % i) for i in range(200)]
    # Deliver 10..0 reversed: all inside the window.
    for i in reversed(range(11)):
        assert opener.open(frames[i][0], HDR, frames[i][1]) == b"x%d" % i
    opener.open(*_frame(frames, 150))
    opener.open(*_frame(frames, 100))  # 50 behind the top: inside a 64-wide window
    with pytest.raises(FrameRejected) as exc:
        opener.open(*_frame(frames, 80))  # 70 behind: too old
    assert _reason(exc) == "replay"
    with pytest.raises(FrameRejected):
        opener.open(*_frame(frames, 100))  # already seen
    opener.open(*_frame(frames, 87))  # 63 behind: still inside


def _frame(frames: list[tuple[bytes, bytes]], i: int) -> tuple[bytes, FrameHeader, bytes]:
    return frames[i][0], HDR, frames[i][1]


def test_two_sealers_on_one_key_have_independent_windows() -> None:
    a, b = _pair()
    s1, s2, opener = a.sealer(), a.sealer(), b.opener()
    assert s1.prefix != s2.prefix  # 2**-32 chance of a false failure
    for s in (s1, s2):
        nonce, ct = s.seal(HDR, DATA)
        assert opener.open(nonce, HDR, ct) == DATA


def test_evicted_sender_prefixes_stay_refused() -> None:
    a, b = _pair()
    opener = FrameOpener(b.recv_key, max_senders=2)
    sealers = [a.sealer() for _ in range(3)]
    first = sealers[0].seal(HDR, DATA)
    for s in sealers:
        nonce, ct = s.seal(HDR, DATA)
        opener.open(nonce, HDR, ct)
    with pytest.raises(FrameRejected) as exc:  # sealer 0's window was evicted
        opener.open(first[0], HDR, first[1])
    assert _reason(exc) == "replay"


def test_misrouted_frames_are_named_as_such() -> None:
    a, b = _pair()
    nonce, ct = a.sealer().seal(HDR, DATA)
    c_view = FrameOpener(b.recv_key, node_id="node-c")
    with pytest.raises(FrameRejected) as exc:
        c_view.open(nonce, HDR, ct)
    assert _reason(exc) == "misrouted"


def test_sealer_refuses_a_header_for_another_link() -> None:
    a, _ = _pair()
    with pytest.raises(ValueError):
        a.sealer().seal(dataclasses.replace(HDR, src="node-x"), DATA)
    with pytest.raises(ValueError):
        a.sealer().seal(dataclasses.replace(HDR, dst="node-x"), DATA)


def test_short_nonce_is_bad_header() -> None:
    _, b = _pair()
    with pytest.raises(FrameRejected) as exc:
        b.opener().open(b"\x00" * 8, HDR, b"\x00" * 32)
    assert _reason(exc) == "bad_header"


def test_counter_exhaustion_raises_instead_of_wrapping() -> None:
    a, _ = _pair()
    sealer = a.sealer()
    sealer._counter = itertools.count((1 << 64) - 1)
    nonce, _ = sealer.seal(HDR, DATA)
    assert nonce[4:] == b"\xff" * 8
    with pytest.raises(OverflowError):
        sealer.seal(HDR, DATA)


def test_bad_key_and_same_node_link_refused() -> None:
    with pytest.raises(KeyMaterialError):
        FrameSealer(b"short", "node-a")
    with pytest.raises(ValueError):
        LinkSecret.derive(A, B.public_key(), "node-a", "node-a", 1).keys(SALT_A, SALT_B)
    with pytest.raises(KeyMaterialError):
        LinkSecret.derive(A, B.public_key(), "node-a", "node-b", 1).keys(b"short", SALT_B)


def test_concurrent_openers_accept_each_frame_once() -> None:
    a, b = _pair()
    sealer, opener = a.sealer(), b.opener()
    frames = [sealer.seal(HDR, DATA) for _ in range(200)]
    accepted: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        for i, (nonce, ct) in enumerate(frames):
            try:
                opener.open(nonce, HDR, ct)
            except FrameRejected:
                continue
            with lock:
                accepted.append(i)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(accepted) == list(range(200))


@settings(max_examples=25, deadline=None)
@given(n=st.integers(min_value=1, max_value=2000), sealers=st.integers(min_value=1, max_value=4))
def test_nonces_never_repeat(n: int, sealers: int) -> None:
    a, _ = _pair()
    seen: set[bytes] = set()
    for s in [a.sealer() for _ in range(sealers)]:
        for _ in range(n):
            seen.add(s.seal(HDR, b"")[0])
    assert len(seen) == n * sealers


def test_a_restarted_sender_seals_under_a_key_never_used_before() -> None:
    """Same nodes, epoch and (restarted) counter: the new process's salt alone
    makes a new key, so equal nonces never meet under one key."""
    a, b = _pair()
    a2, b2 = _pair(salt_a=os.urandom(SALT_LEN))
    assert a2.send_key != a.send_key and a2.recv_key != a.recv_key
    n1, c1 = a.sealer().seal(HDR, DATA)
    n2, c2 = a2.sealer().seal(HDR, DATA)
    assert n1[4:] == n2[4:] == bytes(8)  # both counters start at 0 ...
    assert b.opener().open(n1, HDR, c1) == DATA
    with pytest.raises(FrameRejected) as exc:  # ... under keys that do not cross
        b.opener().open(n2, HDR, c2)
    assert _reason(exc) == "decrypt_failed"
    assert b2.opener().open(n2, HDR, c2) == DATA


def test_a_restarted_receiver_opens_nothing_recorded_before() -> None:
    a, _ = _pair()
    nonce, ct = a.sealer().seal(HDR, DATA)  # recorded on the wire
    _, b_restarted = _pair(salt_b=os.urandom(SALT_LEN))  # fresh windows, fresh salt
    with pytest.raises(FrameRejected) as exc:
        b_restarted.opener().open(nonce, HDR, ct)
    assert _reason(exc) == "decrypt_failed"


def test_salts_are_bound_in_order() -> None:
    """Swapping the two salts is another key: a sender cannot pose as the receiver's life."""
    a, _ = _pair()
    swapped, _ = _pair(salt_a=SALT_B, salt_b=SALT_A)
    assert swapped.send_key != a.send_key
