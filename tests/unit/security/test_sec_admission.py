"""Generate admission (services/node_agent/admission.py): the checks that run
before any tokenising or routing, the per-client session quota, rate-limited
logging of malformed requests and generic INTERNAL messages."""

from __future__ import annotations

import logging
import subprocess
import sys

import grpc
import pytest

from edgesplit.errors import internal_error
from edgesplit.rpc.errors import status_of
from services.node_agent.admission import (
    AdmissionLimits,
    QuotaExceeded,
    RateLimitedLog,
    Rejected,
    SessionQuota,
    check_prompt,
    check_request_id,
    check_temperature,
    client_key,
    new_session_id,
)

LIMITS = AdmissionLimits(max_prompt_bytes=1000, max_prompt_tokens=50, min_temperature=0.05,
                         max_sessions_per_client=2)


def test_errors_map_to_their_status_codes() -> None:
    assert status_of(Rejected("x")) == grpc.StatusCode.INVALID_ARGUMENT
    assert status_of(QuotaExceeded("x")) == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_prompt_caps_count_bytes_not_characters() -> None:
    check_prompt("a" * 1000, (), LIMITS)
    check_prompt("", list(range(50)), LIMITS)
    with pytest.raises(Rejected, match="larger than 1000 bytes"):
        check_prompt("a" * 1001, (), LIMITS)
    with pytest.raises(Rejected, match="larger than"):
        check_prompt("\u00e9" * 501, (), LIMITS)  # 501 characters, 1002 bytes
    with pytest.raises(Rejected, match="51 token ids"):
        check_prompt("", list(range(51)), LIMITS)
    for prompt, ids in (("", ()), ("hi", [1])):
        with pytest.raises(Rejected, match="exactly one"):
            check_prompt(prompt, ids, LIMITS)


class NeverEncoded(str):
    def encode(self, *args: object, **kw: object) -> bytes:  # type: ignore[override]
        raise AssertionError("an oversized prompt was encoded before it was refused")


def test_an_oversized_prompt_is_refused_by_its_length_alone() -> None:
    with pytest.raises(Rejected):
        check_prompt(NeverEncoded("x" * (60 << 20)), (), LIMITS)  # the 60 MB prompt


def test_a_lone_surrogate_is_measured_not_crashed_on() -> None:
    check_prompt("\ud800", (), LIMITS)  # protobuf strings decode to str; never raises here


@pytest.mark.parametrize("rid", ["", "a", "req-1.2_X", "x" * 64])
def test_valid_request_ids(rid: str) -> None:
    assert check_request_id(rid) == rid


@pytest.mark.parametrize("rid", ["x" * 65, "x" * 300, "a b", "a/b", "é", "a\n", "../etc"])
def test_invalid_request_ids(rid: str) -> None:
    with pytest.raises(Rejected, match="request_id"):
        check_request_id(rid)


@pytest.mark.parametrize("t", [0.0, 0.05, 1.0, 2.0])
def test_temperatures_accepted(t: float) -> None:
    check_temperature(t, LIMITS)


@pytest.mark.parametrize("t", [1e-300, 0.049, -1.0, float("nan"), float("inf"), -0.0 - 1e-9])
def test_temperatures_refused(t: float) -> None:
    with pytest.raises(Rejected, match="temperature"):
        check_temperature(t, LIMITS)


def test_session_ids_are_server_made_and_unguessable() -> None:
    ids = {new_session_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


def test_quota_is_per_client_and_released() -> None:
    q = SessionQuota(2)
    q.acquire("spiffe://edgesplit/client/a")
    with q.hold("spiffe://edgesplit/client/a"):
        with pytest.raises(QuotaExceeded, match="2 sessions"):
            q.acquire("spiffe://edgesplit/client/a")
        q.acquire("spiffe://edgesplit/client/b")  # another client is not affected
        assert q.active("spiffe://edgesplit/client/a") == 2
    assert q.active("spiffe://edgesplit/client/a") == 1
    q.release("spiffe://edgesplit/client/a")
    q.release("spiffe://edgesplit/client/b")
    assert q.active("spiffe://edgesplit/client/a") == 0
    assert q._held == {}  # no entry kept per client once it holds nothing


def test_quota_released_when_the_block_raises() -> None:
    q = SessionQuota(1)
    with pytest.raises(RuntimeError), q.hold("c"):
        raise RuntimeError("generation failed")
    with q.hold("c"):
        pass


def test_client_key_prefers_the_identity() -> None:
    assert client_key("spiffe://edgesplit/client/a", "ipv4:1.2.3.4:5") == \
        "spiffe://edgesplit/client/a"
    assert client_key(None, "ipv4:10.0.0.5:4711") == "ipv4:10.0.0.5"
    assert client_key(None, "ipv4:10.0.0.5:4712") == "ipv4:10.0.0.5"  # one quota per host
    assert client_key("", "ipv6:[::1]:50051") == "ipv6:[::1]"


def test_malformed_requests_are_logged_rate_limited_without_tracebacks(
        caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    log = RateLimitedLog(logging.getLogger("test.admission"), per_s=1.0, burst=3,
                         clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, "test.admission"):
        logged = [log.warning("bad request from %s", "c") for _ in range(100)]
        assert logged == [True] * 3 + [False] * 97
        now[0] += 1.0  # one token back
        assert log.warning("bad request from %s", "c")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 4
    assert lines[-1] == "bad request from c (97 similar suppressed)"
    assert all(r.exc_info is None for r in caplog.records)


def test_internal_errors_tell_the_client_only_an_id(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.internal")
    try:
        raise RuntimeError("CUDA out of memory at /secret/path/model.bin")
    except RuntimeError as exc:
        with caplog.at_level(logging.ERROR, "test.internal"):
            message = internal_error(exc, logger)
    assert message.startswith("internal error (id ")
    assert "secret" not in message and "CUDA" not in message
    error_id = message.removeprefix("internal error (id ").removesuffix(")")
    (record,) = caplog.records
    assert error_id in record.getMessage() and "/secret/path" in record.getMessage()
    assert record.exc_info is not None  # the traceback is in the server log only


def test_admission_imports_no_grpc_or_torch() -> None:
    code = ("import sys, services.node_agent.admission\n"
            "print([m for m in sys.modules if m.split('.')[0] in ('grpc', 'torch')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
