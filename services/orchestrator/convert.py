"""The orchestrator's boundary (docs/architecture.md §10.4): its peers' messages <-> core values.

The control loop holds core values only (``edgesplit.core.control``); a plan
becomes a proto here, on its way into an RPC (Revise, Apply, Status) or the
store, and nowhere else.
"""

from __future__ import annotations

from collections.abc import Iterable

from edgesplit.core.control import (
    ControlConfig,
    Decision,
    Observation,
    PlanAnswer,
    PlanRequest,
    observation,
)
from edgesplit.core.types import CostBreakdown, NodeId, Plan
from edgesplit.rpc import convert as cv
from edgesplit.rpc.convert_monitor import cluster_from_state_proto, environment_from_proto
from edgesplit.rpc.convert_orchestrator import decision_to_proto
from edgesplit.v1 import broadcaster_pb2 as bc
from edgesplit.v1 import monitor_pb2
from edgesplit.v1 import orchestrator_pb2 as pb
from edgesplit.v1 import split_reviser_pb2 as sr


def observation_from_proto(m: monitor_pb2.EnvironmentState, config: ControlConfig) -> Observation:
    """E(t) decoded once: the smoothed figures, the monitor's derived cluster and profile."""
    profile = cv.profile_from_proto(m.profile)
    return observation(environment_from_proto(m), cluster_from_state_proto(m), profile, config)


def revise_request_to_proto(q: PlanRequest) -> sr.ReviseRequest:
    req = sr.ReviseRequest(
        state=cv.cluster_to_proto(q.cluster), profile=cv.profile_to_proto(q.profile),
        workload=cv.workload_to_proto(q.workload), mode=cv.MODES.encode(q.mode),
        weights=cv.weights_to_proto(q.weights), entries=list(q.entries), epoch=q.epoch)
    if q.current is not None:
        req.current.CopyFrom(cv.plan_to_proto(q.current))
    return req


def answer_from_proto(m: sr.ReviseResponse) -> PlanAnswer:
    return PlanAnswer(
        plan=cv.plan_from_proto(m.plan) if m.feasible else None,
        cost=cv.cost_from_proto(m.cost),
        current_cost=cv.cost_from_proto(m.current_cost) if m.HasField("current_cost") else None,
        reason=m.reason)


def apply_request(plan: Plan, *, wire_dtype: str, prepare_timeout_s: float) -> bc.ApplyRequest:
    # The plan only: addresses, keys, trust and the privacy depth are the
    # broadcaster's own (its inventory), never the caller's.
    return bc.ApplyRequest(plan=cv.plan_to_proto(plan),
                           wire_dtype=cv.wire_dtype_to_proto(wire_dtype),
                           prepare_timeout=cv.duration(prepare_timeout_s))


def status_to_proto(plan: Plan | None, cost: CostBreakdown | None,
                    reconfigurations: dict[str, int], last_reconfigured_at: float | None,
                    cooldown_left_s: float, last_decision: Decision | None
                    ) -> pb.StatusResponse:
    s = pb.StatusResponse(reconfigurations=reconfigurations)
    if plan is not None:
        s.plan.CopyFrom(cv.plan_to_proto(plan))
    if cost is not None:
        s.cost.CopyFrom(cv.cost_to_proto(cost))
    if last_reconfigured_at is not None:
        s.last_reconfigured_at.CopyFrom(cv.timestamp(last_reconfigured_at))
        s.cooldown_left.CopyFrom(cv.duration(cooldown_left_s))
    if last_decision is not None:
        s.last_decision.CopyFrom(decision_to_proto(last_decision))
    return s


def node_ids(ids: Iterable[str]) -> tuple[NodeId, ...]:
    return tuple(NodeId(i) for i in ids)
