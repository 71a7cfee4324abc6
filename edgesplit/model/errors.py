"""Typed errors of the model layer.

Every class carries the status code the RPC boundary answers with (``code``,
see ``edgesplit.errors``). Nothing here imports torch.
"""

from __future__ import annotations

from edgesplit.errors import Code, DomainError


class ModelError(DomainError):
    """Base class of every error raised by ``edgesplit.model``."""


class UnsupportedModel(ModelError):
    """The model family or a config field is not supported (INVALID_ARGUMENT)."""

    code = Code.INVALID_ARGUMENT


class ModelFileError(ModelError):
    """A model / shard directory lacks a file or a tensor, or one is malformed
    (FAILED_PRECONDITION: the node was asked to serve something it cannot read)."""

    code = Code.FAILED_PRECONDITION


class ShardDigestMismatch(ModelError):
    """A shard's SHA-256 differs from the digest it was expected to have
    (FAILED_PRECONDITION; never load it: it may have been tampered with)."""

    code = Code.FAILED_PRECONDITION

    def __init__(self, shard: str, expected: str, actual: str) -> None:
        super().__init__(f"shard {shard!r}: expected sha256 {expected}, got {actual}")
        self.shard = shard
        self.expected = expected
        self.actual = actual


class SessionNotFound(ModelError):
    """A decode step (``start_pos > 0``) named a session this runner does not hold,
    e.g. after eviction or a restart (NOT_FOUND; the entry replays the history)."""

    code = Code.NOT_FOUND

    def __init__(self, session_id: str) -> None:
        super().__init__(f"unknown session {session_id!r}")
        self.session_id = session_id


class PositionMismatch(ModelError):
    """``start_pos`` is not the session's cached length (INVALID_ARGUMENT: this
    frame does not fit the cache, whatever else the node holds).

    Raised before the cache is touched, so a duplicated or reordered frame cannot
    corrupt the KV cache; ``cached`` tells the caller where to resume.
    """

    code = Code.INVALID_ARGUMENT

    def __init__(self, session_id: str, expected: int, got: int) -> None:
        super().__init__(f"session {session_id!r}: start_pos {got}, but the cache holds {expected}")
        self.session_id = session_id
        self.cached = expected
        self.got = got


class BadFrame(ModelError):
    """Base of the frame validation errors (INVALID_ARGUMENT)."""

    code = Code.INVALID_ARGUMENT


class BadFrameShape(BadFrame):
    """The hidden-state tensor does not have shape ``[1, T, hidden]`` with ``T >= 1``."""


class BadFrameDtype(BadFrame):
    """The hidden-state tensor or wire payload has the wrong or an unknown dtype."""


class BadTokens(BadFrame):
    """Token ids are empty or outside the vocabulary."""


class ContextTooLong(ModelError):
    """The session would grow beyond the model's ``max_position_embeddings``
    (RESOURCE_EXHAUSTED)."""

    code = Code.RESOURCE_EXHAUSTED


class NotServed(ModelError):
    """The runner was asked for a part it does not hold, e.g. ``head`` on a middle
    segment (FAILED_PRECONDITION: the route and the assignment disagree)."""

    code = Code.FAILED_PRECONDITION
