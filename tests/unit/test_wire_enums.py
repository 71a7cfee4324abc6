"""Enums and times at the proto boundary (docs/architecture.md §10.6): zero is
UNSPECIFIED and means the documented default, never a silent weaker level;
unknown values are INVALID_ARGUMENT naming the field; times round-trip."""

from __future__ import annotations

import pytest

from edgesplit.core.control import Change, Decision, Outcome
from edgesplit.core.types import Mode, NodeId, NodeState, Privacy, Trust, Workload
from edgesplit.rpc import convert as cv
from edgesplit.rpc.convert_orchestrator import decision_from_proto, decision_to_proto
from edgesplit.v1 import common_pb2 as pb
from edgesplit.v1 import orchestrator_pb2 as opb


def test_every_core_enum_has_a_twin_and_zero_is_unspecified() -> None:
    for codec in (cv.PRIVACY, cv.TRUST, cv.MODES, cv.PARTS):
        for member in codec.core:
            assert codec.decode(codec.encode(member), "f") is member
            assert codec.encode(member) != 0


def test_unstated_privacy_is_the_default_not_low() -> None:
    high = Workload(privacy=Privacy.HIGH)
    assert cv.PRIVACY.decode(pb.PRIVACY_UNSPECIFIED, "privacy", Privacy.HIGH) is Privacy.HIGH
    assert cv.workload_from_proto(pb.Workload()).privacy is Workload().privacy
    assert cv.workload_from_proto(cv.workload_to_proto(high)).privacy is Privacy.HIGH
    with pytest.raises(cv.ConversionError) as err:  # no default: it must be stated
        cv.PRIVACY.decode(pb.PRIVACY_UNSPECIFIED, "privacy")
    assert err.value.field == "privacy"


def test_unstated_trust_is_untrusted_and_unknown_values_are_refused() -> None:
    m = cv.node_to_proto(NodeState(NodeId("n"), Trust.TRUSTED, 1, 1e9))
    m.trust = pb.TRUST_UNSPECIFIED
    assert cv.node_from_proto(m).trust is Trust.UNTRUSTED
    m.trust = 9
    with pytest.raises(cv.ConversionError) as err:
        cv.node_from_proto(m, "state.nodes[0]")
    assert err.value.field == "state.nodes[0].trust"
    assert cv.mode_from_proto(pb.PLAN_MODE_UNSPECIFIED) is Mode.PLACEMENT


def test_times_round_trip_and_negative_durations_are_refused() -> None:
    assert cv.unix_seconds(cv.timestamp(1_764_590_400.125)) == pytest.approx(1_764_590_400.125)
    assert cv.seconds(cv.duration(0.000_35)) == pytest.approx(0.000_35)
    with pytest.raises(cv.ConversionError, match="at least 0"):
        cv.seconds(cv.duration(-1.0), "prepare_timeout")


def test_a_decision_round_trips_with_its_enums() -> None:
    d = Decision(at=1000.5, triggers=("bandwidth", "latency"), change=Change.MIGRATE,
                 outcome=Outcome.COMMITTED, old_epoch=2, new_epoch=3, detail="x",
                 trigger_to_commit_s=0.25, id=7)
    m = decision_to_proto(d)
    assert list(m.triggers) == [opb.TRIGGER_BANDWIDTH, opb.TRIGGER_LATENCY]
    assert (m.action, m.outcome) == (opb.ACTION_MIGRATE, opb.OUTCOME_COMMITTED)
    assert decision_from_proto(m) == d
    m.outcome = opb.OUTCOME_UNSPECIFIED
    with pytest.raises(cv.ConversionError, match="decision.outcome"):
        decision_from_proto(m)


def test_wire_dtypes_by_codec_name() -> None:
    for name in ("float32", "bfloat16", "float16"):
        assert cv.wire_dtype_from_proto(cv.wire_dtype_to_proto(name), "d", "x") == name
    assert cv.wire_dtype_from_proto(pb.WIRE_DTYPE_UNSPECIFIED, "d", "float32") == "float32"
    with pytest.raises(cv.ConversionError):
        cv.wire_dtype_to_proto("int8")
