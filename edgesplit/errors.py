"""The base of every error that may cross an RPC boundary, and its status code.

Every domain error names the status code it means (docs/architecture.md,
"Errors"): the class carries a :class:`Code` — an enum spelled like gRPC's
``StatusCode`` — and ``edgesplit.rpc.errors`` maps it to gRPC in one place.
Because the code travels with the class (not with its name), renaming a class
cannot turn its error into INTERNAL. This module imports neither grpc nor torch,
so ``edgesplit.core``, ``edgesplit.model`` and ``edgesplit.security`` can
subclass it.
"""

from __future__ import annotations

import enum
import logging
import secrets


class Code(enum.Enum):
    """The status codes domain errors use; names and meanings as gRPC's."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"  # bad input whatever the server's state
    NOT_FOUND = "NOT_FOUND"  # the named session, shard or epoch is not here
    FAILED_PRECONDITION = "FAILED_PRECONDITION"  # the state does not allow it now
    PERMISSION_DENIED = "PERMISSION_DENIED"  # this caller may not do this
    UNAUTHENTICATED = "UNAUTHENTICATED"  # the caller's proof (signature) is wrong
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"  # too large, no memory, too many
    UNAVAILABLE = "UNAVAILABLE"  # a dependency is not there now: retry
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    DATA_LOSS = "DATA_LOSS"  # stored or streamed bytes failed their check
    OUT_OF_RANGE = "OUT_OF_RANGE"
    ABORTED = "ABORTED"
    UNKNOWN = "UNKNOWN"


# ErrorInfo reasons (domain "edgesplit") that clients branch on; any other
# error's reason is its code's name unless it sets one.
PRIVACY_UNSATISFIABLE = "PRIVACY_UNSATISFIABLE"  # no route meets privacy=high, nor can one be made


class DomainError(Exception):
    """Base of edgesplit's errors. ``code`` is the status the boundary answers
    with; a subclass sets it (class-wide, or per instance in ``__init__`` when
    it depends on a reason).

    ``error_reason`` and ``field`` become the status's machine-readable
    details (``google.rpc.ErrorInfo`` and ``BadRequest`` field violations, see
    ``edgesplit.rpc.errors``): ``error_reason`` an UPPER_SNAKE_CASE constant a
    client may branch on (empty: the code's name), ``field`` the request field
    at fault, as a path (``plan.routes[0].entry``; empty: none in particular)."""

    code: Code = Code.UNKNOWN
    error_reason: str = ""
    field: str = ""

    def __init__(self, *args: object, field: str = "", error_reason: str = "") -> None:
        super().__init__(*args)
        if field:
            self.field = field
        if error_reason:
            self.error_reason = error_reason

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if not isinstance(cls.code, Code):
            raise TypeError(f"{cls.__name__}.code must be an edgesplit.errors.Code")


class InvalidRequest(DomainError, ValueError):
    """Bad input whatever the server's state."""

    code = Code.INVALID_ARGUMENT


class NotFound(DomainError, LookupError):
    """The named thing (session, shard, epoch) does not exist here."""

    code = Code.NOT_FOUND


class Precondition(DomainError, RuntimeError):
    """The server's state does not allow this now (stale epoch, wrong phase)."""

    code = Code.FAILED_PRECONDITION


class TooLarge(DomainError, ValueError):
    """A message or request exceeds a configured limit."""

    code = Code.RESOURCE_EXHAUSTED


class Unavailable(DomainError, RuntimeError):
    """A dependency cannot be reached now; the caller may retry."""

    code = Code.UNAVAILABLE


class InsecureSetup(DomainError, ValueError):
    """A component would run without mTLS where that is not allowed: no
    certificates and no explicit ``--insecure``, or plaintext to a host that is
    not loopback."""

    code = Code.FAILED_PRECONDITION


def internal_error(exc: BaseException, logger: logging.Logger) -> str:
    """Log ``exc`` with its traceback under a fresh error id; return the only
    thing the client is told: a generic message naming that id."""
    error_id = secrets.token_hex(6)
    logger.error("internal error %s: %s: %s", error_id, type(exc).__name__, exc, exc_info=exc)
    return f"internal error (id {error_id})"
