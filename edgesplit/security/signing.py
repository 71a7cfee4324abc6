"""Signed envelopes and the pure acceptance rule for assignments.

The control plane signs the *serialized* assignment bytes; a node verifies the
signature first (who sent it), then ``check_assignment`` (is it for me, now,
and newer than what I hold). Both run before the node changes anything, so a
rejected assignment leaves the node exactly as it was.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edgesplit.security.errors import (
    BadSignature,
    ExpiredAssignment,
    StaleEpoch,
    UnknownSigner,
    WrongNode,
)
from edgesplit.security.keys import key_id as compute_key_id

__all__ = [
    "ASSIGNMENT_DOMAIN",
    "DECISION_DOMAIN",
    "AssignmentVerdict",
    "check_assignment",
    "check_decision",
    "payload_digest",
    "sign_envelope",
    "trusted_keys",
    "verify_envelope",
]

# Prefixed to every signed message so an assignment signature can never be
# replayed as a signature over some other message type signed with the same key
# (and vice versa). Bump the version when the assignment encoding changes.
ASSIGNMENT_DOMAIN: Final = b"edgesplit.v1.assignment\0"
# Commit / Abort decisions (RolloutDecision): a signed decision never verifies
# as an assignment, nor an assignment as a decision.
DECISION_DOMAIN: Final = b"edgesplit.v1.decision\0"


def _signed_message(domain: bytes, payload: bytes) -> bytes:
    if not domain.endswith(b"\0"):
        # The NUL terminator keeps "a" + "bc" and "ab" + "c" distinct.
        raise ValueError("domain separation prefix must end with b'\\0'")
    return domain + payload


def sign_envelope(
    payload: bytes, key: Ed25519PrivateKey, *, domain: bytes = ASSIGNMENT_DOMAIN
) -> tuple[bytes, str]:
    """Sign ``payload``; returns ``(signature, key_id)`` to send beside it."""
    return key.sign(_signed_message(domain, payload)), compute_key_id(key)


def verify_envelope(
    payload: bytes,
    signature: bytes,
    key_id: str,
    trusted_public_keys: Mapping[str, Ed25519PublicKey],
    *,
    domain: bytes = ASSIGNMENT_DOMAIN,
) -> None:
    """Return if ``signature`` over ``payload`` is valid under the trusted key ``key_id``.

    Raises UnknownSigner if ``key_id`` is not trusted, BadSignature otherwise.
    """
    public = trusted_public_keys.get(key_id)
    if public is None:
        raise UnknownSigner(f"key id {key_id!r} is not a trusted signer")
    try:
        public.verify(signature, _signed_message(domain, payload))
    except InvalidSignature as exc:
        raise BadSignature(f"signature does not verify under key {key_id}") from exc


def trusted_keys(*public_keys: Ed25519PublicKey) -> dict[str, Ed25519PublicKey]:
    """Build the ``{key_id: key}`` map verify_envelope wants (ids computed, not typed in)."""
    return {compute_key_id(k): k for k in public_keys}


def payload_digest(payload: bytes) -> bytes:
    """SHA-256 of the signed payload: what a node remembers to recognise a re-delivery."""
    return hashlib.sha256(payload).digest()


class AssignmentVerdict(enum.Enum):
    NEW = "new"  # act on it
    DUPLICATE = "duplicate"  # same epoch, same bytes already held: acknowledge, change nothing


def check_assignment(
    node_id: str,
    assignment_node_id: str,
    epoch: int,
    current_epoch: int | None,
    expires_at_ms: int,
    now_ms: int,
    *,
    digest: bytes | None = None,
    current_digest: bytes | None = None,
) -> AssignmentVerdict:
    """Decide whether a node accepts a (signature-verified) assignment.

    ``current_epoch`` is the highest epoch the node holds, prepared or committed
    (None if it holds none); ``current_digest`` the payload_digest of that
    assignment, ``digest`` the one of this. Pure: ``now_ms`` is passed in.

    * another node's assignment -> WrongNode
    * ``now_ms >= expires_at_ms`` -> ExpiredAssignment
    * ``epoch < current_epoch`` -> StaleEpoch
    * ``epoch == current_epoch``: identical digest -> DUPLICATE (a retried
      Prepare is harmless); a different or unknown digest -> StaleEpoch, because
      two different assignments for one epoch mean a replay or a forged rollout.
    """
    if assignment_node_id != node_id:
        raise WrongNode(f"assignment is for node {assignment_node_id!r}, this is {node_id!r}")
    # Checked before the epoch so an expired re-delivery is refused too: the
    # broadcaster must re-sign rather than resurrect an old message.
    if now_ms >= expires_at_ms:
        raise ExpiredAssignment(f"expired at {expires_at_ms} ms, now {now_ms} ms")
    if current_epoch is None or epoch > current_epoch:
        return AssignmentVerdict.NEW
    if epoch == current_epoch:
        if digest is not None and current_digest is not None and digest == current_digest:
            return AssignmentVerdict.DUPLICATE
        raise StaleEpoch(f"epoch {epoch} already held with a different payload (replay?)")
    raise StaleEpoch(f"epoch {epoch} is older than held epoch {current_epoch}")


def check_decision(
    node_id: str,
    decision_node_id: str,
    epoch: int,
    request_epoch: int,
    digest: bytes,
    held_digest: bytes | None,
    expires_at_ms: int,
    now_ms: int,
) -> None:
    """Whether a (signature-verified) Commit/Abort decision applies here. Pure.

    It must name this node and the epoch of the request, be unexpired, and —
    when it names an assignment digest — name the one this node holds for that
    epoch (``held_digest``; None when it holds none).
    """
    if decision_node_id != node_id:
        raise WrongNode(f"decision is for node {decision_node_id!r}, this is {node_id!r}")
    if epoch != request_epoch:
        raise StaleEpoch(f"decision for epoch {epoch} sent with epoch {request_epoch}")
    if now_ms >= expires_at_ms:
        raise ExpiredAssignment(f"decision expired at {expires_at_ms} ms, now {now_ms} ms")
    if digest and held_digest is not None and digest != held_digest:
        raise StaleEpoch(f"decision for epoch {epoch} names another assignment than the "
                         "one held (replay?)")
