"""The orchestrator's control loop (the seed's Algorithm 1) as a pure step.

One monitoring interval is: fold the new E(t) into the loop's memory
(``observe``), decide (``step``), carry the decision out, and remember how it
went (``after``). The orchestrator service does the carrying out over gRPC;
the simulator does it in simulated time. Both run exactly this code, so the
decisions the simulator reports are the ones edgesplit makes.

``step`` never calls the planner itself, so the same function serves a
planner behind an RPC and one called in-process: when it needs a plan it
returns ``Revise``; the caller asks the planner and calls ``step`` again with
the answers so far (``answers`` by mode). ``decide`` is that loop for a
synchronous planner (``solve_request`` calls the core planner directly).

Nothing here reads a clock: ``now`` is passed in, and every instant kept in
``ControlHistory`` is on that same clock (docs/architecture.md, "one
reconfiguration").
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from edgesplit.core import types as t
from edgesplit.core.environment import EnvironmentState, LinkAssumption, complete_links
from edgesplit.core.inventory import NodeInventory
from edgesplit.core.planner import solve
from edgesplit.core.triggers import (
    TriggerConfig,
    decide_revision,
    evaluate_triggers,
    untrusted_sensitive_nodes,
)
from edgesplit.core.types import ClusterState, CostBreakdown, Mode, Plan, Workload

NEVER = float("-inf")
FIRST_PLAN = "initial"  # the trigger name a first plan is counted under
PRIVACY = "privacy"  # ... and a private route made on demand


class Change(enum.Enum):
    """What a decision does to the plan (the recorded ``action``)."""

    KEEP = "keep"
    MIGRATE = "migrate"  # same cuts, other nodes (placement)
    RESPLIT = "resplit"  # new cuts


class Outcome(enum.Enum):
    """How a decision ended (the recorded ``outcome``)."""

    COMMITTED = "committed"
    ABORTED = "aborted"  # the rollout was aborted: the old epoch still serves
    FAILED = "failed"  # the rollout could not be asked for (broadcaster unreachable)
    INFEASIBLE = "infeasible"  # no plan meets the constraints
    REJECTED_MARGIN = "rejected_margin"  # a plan exists but is not better by the margin


@dataclass(frozen=True, slots=True)
class Decision:
    """One recorded decision of the control loop (what the orchestrator's
    History serves and its store keeps)."""

    at: float  # Unix seconds
    triggers: tuple[str, ...]  # TriggerKind values that fired; () for a first plan
    change: Change
    outcome: Outcome
    old_epoch: int
    new_epoch: int
    detail: str = ""
    trigger_to_commit_s: float = 0.0  # 0 when nothing was committed
    old_cost: CostBreakdown | None = None
    new_cost: CostBreakdown | None = None
    id: int = 0  # given by the store


@dataclass(frozen=True, slots=True)
class ControlConfig:
    """Everything the step is tuned by (defaults: the seed's Table 3)."""

    triggers: TriggerConfig = field(default_factory=TriggerConfig)
    margin: float = 0.05  # hysteresis: adopt only a plan this much cheaper
    weights: t.Weights = field(default_factory=t.Weights)
    # The workload plans are judged for; its rate holds until traffic is measured.
    workload: Workload = field(default_factory=Workload)
    entries: tuple[t.NodeId, ...] = ()  # empty: the entries of the current plan
    # Assumed figures of a link between live nodes nobody has measured yet
    # (None: such a link is simply absent, which rules out routes over it).
    assumed_link: LinkAssumption | None = field(default_factory=LinkAssumption)
    initial_wait_s: float = 10.0  # before a first plan, wait this long for every link
    retry_backoff_s: float = 2.0  # after an aborted or failed rollout
    privacy_hold_s: float = 120.0  # plan for privacy=high this long after a request for it
    static: bool = False  # a first plan, then never a change (the baseline)
    rate_alpha: float = 0.2  # EWMA weight of the newest request-rate sample
    min_rate: float = 0.05  # an idle moment is not planned as if no load would come


@dataclass(frozen=True, slots=True)
class Observation:
    """E(t) as the step reads it, derived once per interval (``observation``).

    ``env`` is what the triggers watch; ``cluster`` is the planner's view of
    it with unmeasured links completed by the one rule (``complete_links``);
    ``unmeasured`` counts those links; ``profile`` has measured layer costs.
    """

    env: EnvironmentState
    cluster: ClusterState
    profile: t.ModelProfile
    unmeasured: int = 0

    @property
    def plannable(self) -> bool:
        return bool(self.env.nodes) and self.profile.num_layers > 0


def observation(
    env: EnvironmentState, cluster: ClusterState, profile: t.ModelProfile, config: ControlConfig
) -> Observation:
    """``cluster`` (measured links only, as ``EnvironmentState.to_cluster_state``
    gives it) completed with ``config.assumed_link``."""
    done, unmeasured = complete_links(cluster, config.assumed_link)
    return Observation(env, done, profile, unmeasured)


def observe_environment(
    env: EnvironmentState, inventory: NodeInventory, profile: t.ModelProfile,
    config: ControlConfig,
) -> Observation:
    """The same ``Observation`` in-process (the simulator's way): what the
    monitor derives and serves in ``GetState``, derived here by the same rules."""
    measured = env.measured_profile(profile, inventory)
    return observation(env, env.to_cluster_state(inventory, profile=measured), measured, config)


@dataclass(frozen=True, slots=True)
class ControlHistory:
    """What the loop remembers between intervals; instants on the caller's ``now`` clock."""

    last_reconfigured_at: float | None = None  # the cool-down runs from here
    last_epoch: int = 0  # highest epoch ever tried: epochs are single-use
    retry_at: float = NEVER  # no rollout before this after a failed one
    # After "keep", the same non-urgent triggers are not re-planned every
    # interval: the answer would not change until the state does.
    quiet_until: float = NEVER
    private_until: float = NEVER  # plan for privacy=high until then
    first_heard_at: float | None = None  # a node first reported
    rate: float | None = None  # measured requests per second (EWMA)
    sessions: float | None = None  # measured sessions running at the entries (EWMA)
    last_count: tuple[int, float] | None = None  # (requests_total, at) of the previous E(t)


# ---- the planner's side -------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PlanRequest:
    """One question for the planner (``edgesplit.core.planner.solve``'s arguments)."""

    mode: Mode
    cluster: ClusterState
    profile: t.ModelProfile
    workload: Workload
    weights: t.Weights
    entries: tuple[t.NodeId, ...]
    current: Plan | None
    epoch: t.Epoch


@dataclass(frozen=True, slots=True)
class PlanAnswer:
    """The planner's reply: a plan (None: infeasible, see ``reason``), its cost
    and the current plan's cost under the same state."""

    plan: Plan | None
    cost: CostBreakdown
    current_cost: CostBreakdown | None
    reason: str = ""

    @property
    def feasible(self) -> bool:
        return self.plan is not None


def solve_request(q: PlanRequest) -> PlanAnswer:
    """Answer ``q`` with the core planner, in-process (the simulator's planner)."""
    r = solve(q.cluster, q.profile, q.workload, q.entries, q.mode, q.weights, q.current, q.epoch)
    return PlanAnswer(r.plan, r.cost, r.current_cost, r.reason)


# ---- actions ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Wait:
    """Nothing to do or record this interval."""

    reason: str
    held_by_cooldown: bool = False  # a trigger fired but the cool-down holds it


@dataclass(frozen=True, slots=True)
class Revise:
    """Ask the planner ``request``, then call the step again with its answer."""

    request: PlanRequest


@dataclass(frozen=True, slots=True)
class Keep:
    """Record a decision that leaves the plan as it is."""

    triggers: tuple[str, ...]
    change: Change  # KEEP after triggers; RESPLIT for a first plan that failed
    outcome: Outcome  # INFEASIBLE or REJECTED_MARGIN
    old_cost: CostBreakdown | None
    new_cost: CostBreakdown | None
    reason: str
    urgent: bool = False


@dataclass(frozen=True, slots=True)
class Reconfigure:
    """Roll ``plan`` out, then report the outcome to ``after``."""

    change: Change  # MIGRATE or RESPLIT
    plan: Plan
    cost: CostBreakdown
    old_cost: CostBreakdown | None
    triggers: tuple[str, ...]  # () for a first plan
    reason: str

    @property
    def mode(self) -> Mode:
        return Mode.PLACEMENT if self.change is Change.MIGRATE else Mode.RESPLIT


@dataclass(frozen=True, slots=True)
class Refuse:
    """A private route was asked for and cannot be had."""

    reason: str


Action = Wait | Revise | Keep | Reconfigure | Refuse
Answers = Mapping[Mode, PlanAnswer]
NO_ANSWERS: Answers = MappingProxyType({})


# ---- one interval ---------------------------------------------------------------------
def observe(
    history: ControlHistory, env: EnvironmentState, config: ControlConfig,
    now: float | None = None,
) -> ControlHistory:
    """Fold one E(t) in: the request rate (from the monitor's finished-request
    count, so plans are judged by the traffic actually served) and first contact,
    at ``now`` (default ``env.now``: pass the caller's clock when the monitor's
    is another machine's)."""
    rate, last = history.rate, history.last_count
    if last is not None and env.now > last[1]:
        sample = max(0, env.requests_total - last[0]) / (env.now - last[1])
        a = config.rate_alpha
        rate = sample if rate is None else (1 - a) * rate + a * sample
    sessions = history.sessions
    at_entries = [env.nodes[e].active_sessions for e in config.entries if e in env.nodes]
    if at_entries:
        a = config.rate_alpha
        sample = float(sum(at_entries))
        sessions = sample if sessions is None else (1 - a) * sessions + a * sample
    heard = history.first_heard_at
    if heard is None and any(n.alive and n.reports for n in env.nodes.values()):
        heard = env.now if now is None else now
    return replace(history, rate=rate, last_count=(env.requests_total, env.now),
                   first_heard_at=heard, sessions=sessions)


def step(
    obs: Observation,
    plan: Plan | None,
    history: ControlHistory,
    now: float,
    config: ControlConfig,
    answers: Answers = NO_ANSWERS,
) -> Action:
    """ShouldReconfigure, then placement-then-resplit with hysteresis (Algorithm 1)."""
    if now < history.retry_at:
        return Wait("backing off after a failed rollout")
    if not obs.plannable:
        return Wait("no node or no model profile yet")
    if plan is None:
        return _first_plan(obs, history, now, config, answers)
    if config.static:
        return Wait("static: the first plan is never changed")
    privacy_high = now < history.private_until
    decision = evaluate_triggers(
        obs.env, plan, obs.cluster, history.last_reconfigured_at, now, config.triggers,
        privacy_violation=privacy_high and not is_private(plan, obs.cluster, config))
    fired = tuple(sorted({trig.kind.value for trig in decision.fired}))
    if not decision.act:
        held = bool(fired) and decision.suppressed_by_cooldown
        return Wait(decision.reason, held_by_cooldown=held)
    urgent = any(trig.urgent for trig in decision.fired)
    if not urgent and now < history.quiet_until:
        return Wait("the same state was just answered with keep")
    return _revise(obs, plan, history, now, config, answers, fired, urgent, privacy_high)


def surely_waits(
    env: EnvironmentState,
    plan: Plan | None,
    history: ControlHistory,
    now: float,
    config: ControlConfig,
    inventory: NodeInventory,
) -> bool:
    """True when ``step`` would return ``Wait`` this interval whatever the
    planner's view of ``env``: a plan is in force, nothing is planned for
    privacy=high, and no trigger fires (trust read from the inventory, as
    ``evaluate_triggers`` allows). A caller may then skip deriving the
    ``Observation``, the costly part of a quiet interval; False decides nothing.
    """
    if plan is None:
        return False
    if now < history.retry_at or config.static:
        return True
    if now < history.private_until:
        return False
    return not evaluate_triggers(env, plan, inventory, history.last_reconfigured_at, now,
                                 config.triggers).fired


def private_route(
    obs: Observation,
    plan: Plan | None,
    history: ControlHistory,
    config: ControlConfig,
    answers: Answers = NO_ANSWERS,
) -> Action:
    """A plan that keeps sensitive layers on trusted nodes, asked for by a
    ``privacy=high`` request (call ``demand_privacy`` first): ``Wait`` when the
    plan already does, else a re-split for privacy, whatever the cool-down."""
    if plan is not None and is_private(plan, obs.cluster, config):
        return Wait("the plan already keeps sensitive layers on trusted nodes")
    if config.static:
        return Refuse("static mode: the plan is not changed for privacy")
    answer = answers.get(Mode.RESPLIT)
    if answer is None:
        return Revise(_request(obs, plan, history, config, Mode.RESPLIT, True))
    if answer.plan is None:
        return Refuse(f"no plan keeps sensitive layers on trusted nodes: {answer.reason}")
    return Reconfigure(Change.RESPLIT, answer.plan, answer.cost, None, (PRIVACY,),
                       "private route asked for")


def demand_privacy(history: ControlHistory, now: float, config: ControlConfig) -> ControlHistory:
    """A ``privacy=high`` request arrived: plan for privacy for the next ``privacy_hold_s``."""
    return replace(history, private_until=now + config.privacy_hold_s)


def after(
    history: ControlHistory, action: Keep | Reconfigure, outcome: Outcome, now: float,
    config: ControlConfig,
) -> ControlHistory:
    """Remember how ``action`` ended (``outcome``: the rollout's, or the Keep's own)."""
    if isinstance(action, Keep):
        if action.change is Change.KEEP and not action.urgent:
            return replace(history, quiet_until=now + config.triggers.cooldown_s / 2)
        return history
    tried = max(history.last_epoch, action.plan.epoch)
    if outcome is Outcome.COMMITTED:
        return replace(history, last_epoch=tried, last_reconfigured_at=now)
    return replace(history, last_epoch=tried, retry_at=now + config.retry_backoff_s)


def decide(
    obs: Observation,
    plan: Plan | None,
    history: ControlHistory,
    now: float,
    config: ControlConfig,
    planner: Callable[[PlanRequest], PlanAnswer] = solve_request,
    *,
    private: bool = False,
) -> Wait | Keep | Reconfigure | Refuse:
    """``step`` (``private_route`` when ``private``) with its ``Revise``
    questions answered by a synchronous ``planner``."""
    answers: dict[Mode, PlanAnswer] = {}
    while True:
        action = (private_route(obs, plan, history, config, answers) if private
                  else step(obs, plan, history, now, config, answers))
        if not isinstance(action, Revise):
            return action
        answers[action.request.mode] = planner(action.request)


def is_private(plan: Plan, cluster: ClusterState, config: ControlConfig) -> bool:
    """No route of ``plan`` puts a sensitive part on a node its entry does not trust."""
    nodes = {n.node_id: n for n in cluster.nodes}
    depth = config.triggers.privacy_depth
    return not any(untrusted_sensitive_nodes(r, nodes, depth) for r in plan.routes)


def workload(history: ControlHistory, config: ControlConfig, privacy_high: bool) -> Workload:
    """The configured workload at the measured rate (the configured one until
    traffic). When the planner may replicate (``max_replicas`` > 1) the
    sessions measured at the entries count too: in a closed loop the rate
    served stays low exactly when the route is saturated."""
    wl = config.workload
    rate = max(history.rate, config.min_rate) if history.rate else wl.requests_per_s
    sessions = wl.concurrent_sessions
    if wl.max_replicas > 1 and history.sessions:
        sessions = max(sessions, round(history.sessions))
    return replace(wl, requests_per_s=rate, concurrent_sessions=sessions,
                   privacy=t.Privacy.HIGH if privacy_high else t.Privacy.LOW)


# ---- internals ------------------------------------------------------------------------
def _request(obs: Observation, plan: Plan | None, history: ControlHistory,
             config: ControlConfig, mode: Mode, privacy_high: bool) -> PlanRequest:
    entries = config.entries or (plan.entries if plan else ())
    return PlanRequest(mode, obs.cluster, obs.profile, workload(history, config, privacy_high),
                       config.weights, entries, plan, t.Epoch(history.last_epoch + 1))


def _first_plan(obs: Observation, history: ControlHistory, now: float, config: ControlConfig,
                answers: Answers) -> Action:
    # Every enrolled node reporting and every link between them measured, or
    # ``initial_wait_s`` since the first report: a first plan made while agents
    # still start would leave them out until the next trigger.
    nodes = obs.env.nodes.values()
    if not any(n.alive and n.reports for n in nodes):
        return Wait("no node has reported yet")
    complete = all(n.alive and n.reports for n in nodes) and not obs.unmeasured
    waited = history.first_heard_at is not None and \
        now >= history.first_heard_at + config.initial_wait_s
    if not (complete or waited):
        return Wait("agents are still starting or probing their links")
    answer = answers.get(Mode.RESPLIT)
    if answer is None:
        return Revise(_request(obs, None, history, config, Mode.RESPLIT,
                               now < history.private_until))
    if answer.plan is None:
        return Keep((), Change.RESPLIT, Outcome.INFEASIBLE, None, answer.cost, answer.reason)
    return Reconfigure(Change.RESPLIT, answer.plan, answer.cost, None, (), "first plan")


def _revise(obs: Observation, plan: Plan, history: ControlHistory, now: float,
            config: ControlConfig, answers: Answers, fired: tuple[str, ...], urgent: bool,
            privacy_high: bool) -> Action:
    placement = answers.get(Mode.PLACEMENT)
    if placement is None:
        return Revise(_request(obs, plan, history, config, Mode.PLACEMENT, privacy_high))
    current = placement.current_cost
    p_cost = placement.cost if placement.feasible else None
    verdict = decide_revision(current, p_cost, None, config.margin)
    resplit = None
    broken = current is None or not current.feasible
    if verdict.try_resplit or broken:
        resplit = answers.get(Mode.RESPLIT)
        if resplit is None:
            return Revise(_request(obs, plan, history, config, Mode.RESPLIT, privacy_high))
        r_cost = resplit.cost if resplit.feasible else None
        # A broken plan (dead node) adopts any feasible one: the re-split
        # when it is cheaper at all, not only by the margin.
        if broken and p_cost is not None and r_cost is not None and r_cost.total < p_cost.total:
            verdict = decide_revision(current, None, r_cost, config.margin)
        else:
            verdict = decide_revision(current, p_cost, r_cost, config.margin)
    if verdict.adopt is None:
        best = resplit if resplit is not None and resplit.feasible else placement
        outcome = Outcome.REJECTED_MARGIN if best.feasible else Outcome.INFEASIBLE
        return Keep(fired, Change.KEEP, outcome, current, best.cost, verdict.reason, urgent)
    chosen = placement if verdict.adopt is Mode.PLACEMENT else resplit
    assert chosen is not None and chosen.plan is not None
    change = Change.MIGRATE if verdict.adopt is Mode.PLACEMENT else Change.RESPLIT
    return Reconfigure(change, chosen.plan, chosen.cost, current, fired, verdict.reason)
