"""The orchestrator's per-cycle decision, as the simulator calls it.

The one seam between the simulator and the project's decision code: every
call goes to ``edgesplit.core.control`` (``observe``, ``step`` through
``decide``, ``private_route``, ``after``), the pure step the orchestrator
service runs, with the core planner answering its ``Revise`` questions
in-process. E(t) comes from the real monitor reducer; only I/O is left out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from edgesplit.core import control
from edgesplit.core.control import (
    ControlConfig,
    ControlHistory,
    Keep,
    Outcome,
    PlanAnswer,
    PlanRequest,
    Reconfigure,
    Refuse,
    Revise,
    Wait,
)
from edgesplit.core.environment import EnvironmentState
from edgesplit.core.inventory import NodeInventory
from edgesplit.core.types import Mode, ModelProfile, NodeId, Plan

Proposal = Reconfigure  # what the simulator rolls out


@dataclass(slots=True)
class Decider:
    config: ControlConfig
    inventory: NodeInventory
    profile: ModelProfile
    entries: tuple[NodeId, ...]
    history: ControlHistory = field(default_factory=ControlHistory)
    planner_calls: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    # Only for measuring (``sim bench``): the wall time of planner calls. No
    # decision reads it, so results stay a function of the inputs and seed.
    clock: Callable[[], float] | None = None
    planner_wall_s: float = 0.0

    @property
    def privacy_depth(self) -> int:
        return self.config.triggers.privacy_depth

    def _planner(self, q: PlanRequest) -> PlanAnswer:
        self.planner_calls += 1
        start = self.clock() if self.clock is not None else 0.0
        answer = control.solve_request(q)
        if self.clock is not None:
            self.planner_wall_s += self.clock() - start
        return answer

    def _observation(self, env: EnvironmentState) -> control.Observation:
        cluster = env.to_cluster_state(self.inventory)
        profile = env.measured_profile(self.profile, self.inventory)
        return control.observation(env, cluster, profile, self.config)

    def _count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    def cycle(self, env: EnvironmentState, plan: Plan | None, now: float) -> Proposal | None:
        """One interval: a plan to roll out (the first one when ``plan`` is None), or None."""
        self.history = control.observe(self.history, env, self.config)
        if control.surely_waits(env, plan, self.history, now, self.config, self.inventory):
            return None
        action = control.decide(self._observation(env), plan, self.history, now, self.config,
                                self._planner)
        if isinstance(action, Keep):
            self._count(action.outcome.value)
            self.history = control.after(self.history, action, action.outcome, now, self.config)
            return None
        return action if isinstance(action, Reconfigure) else None

    def private_route(self, env: EnvironmentState, plan: Plan | None, now: float
                      ) -> Proposal | None | bool:
        """``ensure_private_route``: True if ``plan`` is already private, a private
        plan to roll out, or None when there is none (or the mode refuses)."""
        self.history = control.demand_privacy(self.history, now, self.config)
        obs = self._observation(env)
        answers: dict[Mode, PlanAnswer] = {}
        while isinstance(action := control.private_route(obs, plan, self.history, self.config,
                                                          answers), Revise):
            answers[action.request.mode] = self._planner(action.request)
        if isinstance(action, Wait):
            return True
        if isinstance(action, Refuse):
            return None
        return action

    def committed(self, p: Proposal, decided_at: float) -> None:
        self._count("committed")
        self.history = control.after(self.history, p, Outcome.COMMITTED, decided_at, self.config)

    def aborted(self, p: Proposal, now: float) -> None:
        self._count("aborted")
        self.history = control.after(self.history, p, Outcome.ABORTED, now, self.config)
