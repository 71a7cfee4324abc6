"""Typed security errors.

Every class carries ``status``: the *name* of the gRPC status code the RPC
boundary should map it to. It is a plain string because this package must not
import grpc; ``edgesplit.rpc`` turns it into ``grpc.StatusCode[err.status]`` in
one place (STYLE.md 5).
"""

from __future__ import annotations

from typing import ClassVar, Final, Literal, get_args

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


class SecurityError(Exception):
    """Base of every error raised by ``edgesplit.security``."""

    status: ClassVar[str] = "PERMISSION_DENIED"


class BadSignature(SecurityError):
    """The signer is known but the signature does not match the payload."""

    status = "UNAUTHENTICATED"


class UnknownSigner(SecurityError):
    """The envelope names a key id the receiver was not configured to trust."""

    status = "PERMISSION_DENIED"


class WrongNode(SecurityError):
    """A validly signed assignment addressed to another node."""

    status = "FAILED_PRECONDITION"


class StaleEpoch(SecurityError):
    """The epoch is not newer than what the node already holds (stale or replay)."""

    status = "FAILED_PRECONDITION"


class ExpiredAssignment(SecurityError):
    """The assignment's expiry has passed."""

    status = "FAILED_PRECONDITION"


# A closed set so the reason can be a Prometheus label without unbounded
# cardinality; anything finer goes in the message, not the label.
FrameRejectReason = Literal["decrypt_failed", "replay", "misrouted", "bad_header"]
FRAME_REJECT_REASONS: Final[frozenset[str]] = frozenset(get_args(FrameRejectReason))

_FRAME_STATUS: Final[dict[str, str]] = {
    # A malformed header is bad input whatever the state.
    "bad_header": "INVALID_ARGUMENT",
    # The other three mean "this peer may not make us accept this frame".
    "decrypt_failed": "PERMISSION_DENIED",
    "replay": "PERMISSION_DENIED",
    "misrouted": "PERMISSION_DENIED",
}


class FrameRejected(SecurityError):
    """An activation frame was refused; ``reason`` is one of FRAME_REJECT_REASONS."""

    def __init__(self, reason: FrameRejectReason, detail: str = "") -> None:
        if reason not in FRAME_REJECT_REASONS:
            raise ValueError(f"unknown frame reject reason {reason!r}")
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason: FrameRejectReason = reason
        self.detail = detail

    @property
    def status(self) -> str:  # type: ignore[override]  # per-instance, depends on reason
        return _FRAME_STATUS[self.reason]


class KeyMaterialError(SecurityError):
    """A key, certificate or CA file is missing, unreadable or of the wrong kind.

    Raised at start-up while loading configuration, so the message names the path.
    """

    status = "FAILED_PRECONDITION"


class ShardDecryptError(SecurityError):
    """A shard blob failed authentication: wrong key, wrong shard id, corrupt or truncated."""

    status = "DATA_LOSS"


class KeyUnwrapError(SecurityError):
    """A wrapped shard key could not be opened: another recipient, context or tampering."""

    status = "PERMISSION_DENIED"
