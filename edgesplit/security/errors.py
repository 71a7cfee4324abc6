"""Typed security errors.

Every class carries ``code``: the status code (``edgesplit.errors.Code``) the
RPC boundary answers with; ``edgesplit.rpc.errors`` turns it into gRPC's in one
place. This package imports no grpc.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

from edgesplit.errors import Code, DomainError

__all__ = [
    "FRAME_REJECT_REASONS",
    "BadSignature",
    "ExpiredAssignment",
    "FrameRejectReason",
    "FrameRejected",
    "KeyMaterialError",
    "KeyUnwrapError",
    "SecurityError",
    "ShardDecryptError",
    "StaleEpoch",
    "UnknownSigner",
    "WrongNode",
]


class SecurityError(DomainError):
    """Base of every error raised by ``edgesplit.security``."""

    code = Code.PERMISSION_DENIED


class BadSignature(SecurityError):
    """The signer is known but the signature does not match the payload."""

    code = Code.UNAUTHENTICATED


class UnknownSigner(SecurityError):
    """The envelope names a key id the receiver was not configured to trust."""

    code = Code.PERMISSION_DENIED


class WrongNode(SecurityError):
    """A validly signed assignment addressed to another node."""

    code = Code.FAILED_PRECONDITION


class StaleEpoch(SecurityError):
    """The epoch is not newer than what the node already holds (stale or replay)."""

    code = Code.FAILED_PRECONDITION


class ExpiredAssignment(SecurityError):
    """The assignment's expiry has passed."""

    code = Code.FAILED_PRECONDITION


# A closed set so the reason can be a Prometheus label without unbounded
# cardinality; anything finer goes in the message, not the label.
FrameRejectReason = Literal["decrypt_failed", "replay", "misrouted", "bad_header",
                            "stale_link", "non_finite", "chunk_limit"]
FRAME_REJECT_REASONS: Final[frozenset[str]] = frozenset(get_args(FrameRejectReason))

_FRAME_CODE: Final[dict[str, Code]] = {
    # A malformed header is bad input whatever the state.
    "bad_header": Code.INVALID_ARGUMENT,
    # The other three mean "this peer may not make us accept this frame".
    "decrypt_failed": Code.PERMISSION_DENIED,
    "replay": Code.PERMISSION_DENIED,
    "misrouted": Code.PERMISSION_DENIED,
    # No handshake with the sender's current process (or the receiver
    # restarted since): the sender says hello again, then the step is replayed.
    "stale_link": Code.UNAVAILABLE,
    # NaN or infinity in an activation: bad input whatever the state.
    "non_finite": Code.INVALID_ARGUMENT,
    # Too many or too large half-received chunked frames.
    "chunk_limit": Code.RESOURCE_EXHAUSTED,
}


class FrameRejected(SecurityError):
    """An activation frame was refused; ``reason`` is one of FRAME_REJECT_REASONS."""

    def __init__(self, reason: FrameRejectReason, detail: str = "") -> None:
        if reason not in FRAME_REJECT_REASONS:
            raise ValueError(f"unknown frame reject reason {reason!r}")
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason: FrameRejectReason = reason
        self.detail = detail
        self.code = _FRAME_CODE[reason]  # per instance: depends on the reason


class KeyMaterialError(SecurityError):
    """A key, certificate or CA file is missing, unreadable or of the wrong kind.

    Raised at start-up while loading configuration, so the message names the path.
    """

    code = Code.FAILED_PRECONDITION


class ShardDecryptError(SecurityError):
    """A shard blob failed authentication: wrong key, wrong shard id, corrupt or truncated."""

    code = Code.DATA_LOSS


class KeyUnwrapError(SecurityError):
    """A wrapped shard key could not be opened: another recipient, context or tampering."""

    code = Code.PERMISSION_DENIED
