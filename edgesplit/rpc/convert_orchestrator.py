"""Orchestrator messages <-> core values (docs/architecture.md §10.4): decisions,
their triggers, actions and outcomes as enums on the wire, strings and core
enums inside."""

from __future__ import annotations

from edgesplit.core.control import Change, Decision, Outcome
from edgesplit.core.triggers import TriggerKind
from edgesplit.rpc.convert import (
    EnumCodec,
    cost_from_proto,
    cost_to_proto,
    duration,
    seconds,
    timestamp,
    unix_seconds,
)
from edgesplit.v1 import orchestrator_pb2 as pb

TRIGGERS = EnumCodec(TriggerKind, pb.Trigger, "TRIGGER_")
ACTIONS = EnumCodec(Change, pb.Action, "ACTION_")
OUTCOMES = EnumCodec(Outcome, pb.Outcome, "OUTCOME_")


def decision_to_proto(d: Decision) -> pb.Decision:
    m = pb.Decision(
        id=d.id, at=timestamp(d.at),
        triggers=[TRIGGERS.encode(TriggerKind(t)) for t in d.triggers],
        action=ACTIONS.encode(d.change), outcome=OUTCOMES.encode(d.outcome),
        trigger_to_commit=duration(d.trigger_to_commit_s), old_epoch=d.old_epoch,
        new_epoch=d.new_epoch, detail=d.detail[:1000])
    if d.old_cost is not None:
        m.old_cost.CopyFrom(cost_to_proto(d.old_cost))
    if d.new_cost is not None:
        m.new_cost.CopyFrom(cost_to_proto(d.new_cost))
    return m


def decision_from_proto(m: pb.Decision, field: str = "decision") -> Decision:
    return Decision(
        at=unix_seconds(m.at),
        triggers=tuple(TRIGGERS.decode(t, f"{field}.triggers[{i}]").value
                       for i, t in enumerate(m.triggers)),
        change=ACTIONS.decode(m.action, f"{field}.action"),
        outcome=OUTCOMES.decode(m.outcome, f"{field}.outcome"),
        old_epoch=m.old_epoch, new_epoch=m.new_epoch, detail=m.detail,
        trigger_to_commit_s=seconds(m.trigger_to_commit, f"{field}.trigger_to_commit"),
        old_cost=cost_from_proto(m.old_cost) if m.HasField("old_cost") else None,
        new_cost=cost_from_proto(m.new_cost) if m.HasField("new_cost") else None,
        id=m.id)
