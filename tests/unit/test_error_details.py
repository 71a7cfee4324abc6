"""Domain errors carry google.rpc details in their status (docs/architecture.md §8):
ErrorInfo always; BadRequest / PreconditionFailure naming the field."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2, status_pb2

from edgesplit.errors import Code, DomainError, InvalidRequest, NotFound, Precondition
from edgesplit.rpc.convert import ConversionError
from edgesplit.rpc.errors import DOMAIN, rich_status


def _details(exc: DomainError) -> tuple[grpc.Status, list[object]]:
    status = rich_status(exc)
    ((key, raw),) = status.trailing_metadata
    assert key == "grpc-status-details-bin"
    rich = status_pb2.Status.FromString(raw)
    assert (rich.code, rich.message) == (status.code.value[0], status.details)
    out: list[object] = []
    for any_ in rich.details:
        for kind in (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest,
                     error_details_pb2.PreconditionFailure):
            msg = kind()
            if any_.Unpack(msg):
                out.append(msg)
    return status, out


def test_invalid_argument_names_its_field_in_a_bad_request() -> None:
    status, (info, bad) = _details(ConversionError("plan.routes[0].entry", "empty"))
    assert status.code is grpc.StatusCode.INVALID_ARGUMENT
    assert (info.domain, info.reason, dict(info.metadata)) == (
        DOMAIN, "INVALID_ARGUMENT", {"field": "plan.routes[0].entry"})
    assert [(v.field, v.description) for v in bad.field_violations] == [
        ("plan.routes[0].entry", "plan.routes[0].entry: empty")]


def test_failed_precondition_names_its_subject_and_reason() -> None:
    exc = Precondition("epoch 3 is older than 5", field="plan.epoch", error_reason="STALE_EPOCH")
    status, (info, pre) = _details(exc)
    assert status.code is grpc.StatusCode.FAILED_PRECONDITION and info.reason == "STALE_EPOCH"
    (v,) = pre.violations
    assert (v.type, v.subject, v.description) == ("STALE_EPOCH", "plan.epoch", str(exc))


def test_without_a_field_only_error_info_travels() -> None:
    _, details = _details(InvalidRequest("bad"))
    assert [type(d).__name__ for d in details] == ["ErrorInfo"]
    _, (info,) = _details(NotFound("no such session"))
    assert info.reason == Code.NOT_FOUND.name
