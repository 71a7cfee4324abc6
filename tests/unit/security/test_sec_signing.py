"""Signed envelopes and the assignment acceptance rule."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgesplit.security import keys
from edgesplit.security.errors import (
    BadSignature,
    ExpiredAssignment,
    StaleEpoch,
    UnknownSigner,
    WrongNode,
)
from edgesplit.security.signing import (
    ASSIGNMENT_DOMAIN,
    AssignmentVerdict,
    check_assignment,
    payload_digest,
    sign_envelope,
    trusted_keys,
    verify_envelope,
)

PAYLOAD = b"\x08\x07\x12\x06node-a"  # stands in for a serialized Assignment proto


@pytest.fixture(scope="module")
def cp_key() -> Ed25519PrivateKey:
    return keys.generate_signing_key()


def test_round_trip(cp_key: Ed25519PrivateKey) -> None:
    sig, kid = sign_envelope(PAYLOAD, cp_key)
    assert kid == keys.key_id(cp_key) and len(sig) == 64
    verify_envelope(PAYLOAD, sig, kid, trusted_keys(cp_key.public_key()))


def test_tampered_payload_is_bad_signature(cp_key: Ed25519PrivateKey) -> None:
    sig, kid = sign_envelope(PAYLOAD, cp_key)
    with pytest.raises(BadSignature):
        verify_envelope(PAYLOAD + b"\x00", sig, kid, trusted_keys(cp_key.public_key()))
    flipped = bytes([sig[0] ^ 1]) + sig[1:]
    with pytest.raises(BadSignature):
        verify_envelope(PAYLOAD, flipped, kid, trusted_keys(cp_key.public_key()))


def test_signature_by_another_key_under_a_trusted_id_is_bad_signature(
    cp_key: Ed25519PrivateKey,
) -> None:
    forged, _ = sign_envelope(PAYLOAD, keys.generate_signing_key())
    kid = keys.key_id(cp_key)
    with pytest.raises(BadSignature):
        verify_envelope(PAYLOAD, forged, kid, trusted_keys(cp_key.public_key()))


def test_untrusted_signer_is_unknown_signer(cp_key: Ed25519PrivateKey) -> None:
    rogue = keys.generate_signing_key()
    sig, kid = sign_envelope(PAYLOAD, rogue)
    with pytest.raises(UnknownSigner):
        verify_envelope(PAYLOAD, sig, kid, trusted_keys(cp_key.public_key()))


def test_domain_separation(cp_key: Ed25519PrivateKey) -> None:
    other = b"edgesplit.v1.something-else\0"
    sig, kid = sign_envelope(PAYLOAD, cp_key, domain=other)
    with pytest.raises(BadSignature):
        verify_envelope(PAYLOAD, sig, kid, trusted_keys(cp_key.public_key()))
    verify_envelope(PAYLOAD, sig, kid, trusted_keys(cp_key.public_key()), domain=other)
    # A bare signature over the payload (no prefix) is not an assignment signature.
    bare = cp_key.sign(PAYLOAD)
    with pytest.raises(BadSignature):
        verify_envelope(PAYLOAD, bare, kid, trusted_keys(cp_key.public_key()))
    assert ASSIGNMENT_DOMAIN.endswith(b"\0")
    with pytest.raises(ValueError):
        sign_envelope(PAYLOAD, cp_key, domain=b"no-terminator")


def test_several_trusted_signers(cp_key: Ed25519PrivateKey) -> None:
    second = keys.generate_signing_key()  # e.g. during control-plane key rotation
    trusted = trusted_keys(cp_key.public_key(), second.public_key())
    for key in (cp_key, second):
        sig, kid = sign_envelope(PAYLOAD, key)
        verify_envelope(PAYLOAD, sig, kid, trusted)


NOW = 1_000_000
D1, D2 = payload_digest(b"one"), payload_digest(b"two")


def _check(**overrides: object) -> AssignmentVerdict:
    args: dict[str, object] = {
        "node_id": "node-a",
        "assignment_node_id": "node-a",
        "epoch": 5,
        "current_epoch": 4,
        "expires_at_ms": NOW + 1,
        "now_ms": NOW,
        "digest": D1,
        "current_digest": D2,
    }
    args.update(overrides)
    return check_assignment(**args)  # type: ignore[arg-type]


def test_newer_epoch_is_new() -> None:
    assert _check() is AssignmentVerdict.NEW
    assert _check(current_epoch=None, current_digest=None) is AssignmentVerdict.NEW


def test_wrong_node() -> None:
    with pytest.raises(WrongNode):
        _check(assignment_node_id="node-b")


def test_stale_epoch() -> None:
    with pytest.raises(StaleEpoch):
        _check(epoch=3)


def test_same_epoch_different_payload_is_a_replay() -> None:
    with pytest.raises(StaleEpoch):
        _check(epoch=4, digest=D1, current_digest=D2)
    with pytest.raises(StaleEpoch):  # no digest to compare: cannot prove it is a duplicate
        _check(epoch=4, digest=None, current_digest=D2)


def test_same_epoch_identical_payload_is_a_harmless_duplicate() -> None:
    assert _check(epoch=4, digest=D1, current_digest=D1) is AssignmentVerdict.DUPLICATE


def test_expired() -> None:
    with pytest.raises(ExpiredAssignment):
        _check(expires_at_ms=NOW)
    with pytest.raises(ExpiredAssignment):  # even as a duplicate: the broadcaster re-signs
        _check(epoch=4, digest=D1, current_digest=D1, expires_at_ms=NOW - 1)
