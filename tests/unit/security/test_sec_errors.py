"""Error types carry the status code the boundary maps them to."""

from __future__ import annotations

import subprocess
import sys

import pytest

from edgesplit.security import errors


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (errors.BadSignature("x"), "UNAUTHENTICATED"),
        (errors.UnknownSigner("x"), "PERMISSION_DENIED"),
        (errors.WrongNode("x"), "FAILED_PRECONDITION"),
        (errors.StaleEpoch("x"), "FAILED_PRECONDITION"),
        (errors.ExpiredAssignment("x"), "FAILED_PRECONDITION"),
        (errors.FrameRejected("bad_header"), "INVALID_ARGUMENT"),
        (errors.FrameRejected("decrypt_failed"), "PERMISSION_DENIED"),
        (errors.FrameRejected("replay"), "PERMISSION_DENIED"),
        (errors.FrameRejected("misrouted"), "PERMISSION_DENIED"),
    ],
)
def test_status_codes(exc: errors.SecurityError, code: str) -> None:
    assert isinstance(exc, errors.SecurityError)
    assert exc.code.name == code


def test_frame_rejected_reason_is_a_closed_set() -> None:
    exc = errors.FrameRejected("replay", "counter 3 already seen")
    assert exc.reason == "replay" and "counter 3" in str(exc)
    assert errors.FRAME_REJECT_REASONS == {"decrypt_failed", "replay", "misrouted", "bad_header",
                                           "stale_link", "non_finite", "chunk_limit"}
    with pytest.raises(ValueError):
        errors.FrameRejected("something else")  # type: ignore[arg-type]


def test_security_package_imports_neither_grpc_nor_torch() -> None:
    code = (
        "import sys, edgesplit.security, edgesplit.security.tls;"
        "bad = [m for m in ('grpc', 'torch') if m in sys.modules];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
