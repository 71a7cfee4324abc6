"""Algorithm 1 of the seed, for real: the I/O shell around the pure control step.

Every interval it reads E(t) from the monitor, lets ``edgesplit.core.control``
decide, asks the split reviser when the step wants a plan, rolls an adopted
plan out through the broadcaster, and records every decision. The loop holds
core values; ``services.orchestrator.convert`` turns them into messages at
each RPC and at the store (docs/architecture.md, "one reconfiguration").
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace

import grpc
from prometheus_client import Counter, Gauge, Histogram

from edgesplit.core import control as ctl
from edgesplit.core import control_flags
from edgesplit.core.types import CostBreakdown, Mode, Plan
from edgesplit.errors import PRIVACY_UNSATISFIABLE
from edgesplit.rpc import convert as cv
from edgesplit.rpc.errors import Precondition, Unavailable
from edgesplit.rpc.transport import Transport, TransportSettings
from edgesplit.v1 import broadcaster_pb2 as bc
from edgesplit.v1 import broadcaster_pb2_grpc as bc_grpc
from edgesplit.v1 import monitor_pb2, monitor_pb2_grpc
from edgesplit.v1 import orchestrator_pb2 as pb
from edgesplit.v1 import split_reviser_pb2_grpc as sr_grpc
from services.orchestrator import convert as oc
from services.orchestrator.config import OrchestratorConfig
from services.orchestrator.store import Store

log = logging.getLogger(__name__)
# The deadline of the monitor's state stream (every call has one); it is
# re-opened at once when it passes.
WATCH_RENEW_S = 300.0

EPOCH = Gauge("edgesplit_orchestrator_epoch", "Epoch of the plan in force")
RECONFIGS = Counter("edgesplit_reconfigurations_total", "Committed reconfigurations, by trigger",
                    ["trigger"])
DECISIONS = Counter("edgesplit_decisions_total", "Control-loop decisions, by outcome",
                    ["outcome"])
TO_COMMIT = Histogram("edgesplit_trigger_to_commit_seconds", "Trigger to committed rollout",
                      buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60))


def control_config(c: OrchestratorConfig) -> ctl.ControlConfig:
    """The step's settings from the service's (the simulator's rule too)."""
    return control_flags.control_config(c.model_dump(include=set(control_flags.FLAGS)))


class ControlLoop:
    def __init__(self, config: OrchestratorConfig, store: Store,
                 transport: Transport | None = None) -> None:
        self.config = config
        self.control = control_config(config)
        self.store = store
        resumed = store.resume()
        self.plan: Plan | None = resumed.plan
        self.cost: CostBreakdown | None = None
        self.reconfigurations = resumed.reconfigurations
        self.history = ctl.ControlHistory(last_reconfigured_at=resumed.last_reconfigured_at,
                                          last_epoch=resumed.last_epoch)
        self.last_decision: ctl.Decision | None = None
        self._lock = asyncio.Lock()  # one rollout at a time
        self._wake = asyncio.Event()  # a decision now, not at the end of the interval
        transport = transport or Transport(TransportSettings.of(config))
        self._channels = [transport.aio_channel(a) for a in (config.monitor, config.split_reviser,
                                                             config.broadcaster)]
        self.monitor = monitor_pb2_grpc.MonitorStub(self._channels[0])
        self.reviser = sr_grpc.SplitReviserStub(self._channels[1])
        self.broadcaster = bc_grpc.BroadcasterStub(self._channels[2])
        if self.plan is not None:
            EPOCH.set(self.plan.epoch)

    @property
    def last_reconfigured_at(self) -> float | None:
        return self.history.last_reconfigured_at

    async def close(self) -> None:
        for ch in self._channels:
            await ch.close()

    # ---- the three peers ------------------------------------------------------------
    async def observe(self) -> ctl.Observation:
        reply = await self.monitor.GetState(monitor_pb2.GetStateRequest(),
                                            timeout=self.config.rpc_timeout_s)
        return oc.observation_from_proto(reply.state, self.control)

    async def revise(self, action: ctl.Revise) -> ctl.PlanAnswer:
        reply = await self.reviser.Revise(oc.revise_request_to_proto(action.request),
                                          timeout=self.config.rpc_timeout_s)
        return oc.answer_from_proto(reply)

    async def decide(self, obs: ctl.Observation, now: float, private: bool = False
                     ) -> ctl.Wait | ctl.Keep | ctl.Reconfigure | ctl.Refuse:
        """``step`` (or ``private_route``), its questions answered by the split reviser."""
        answers: dict[Mode, ctl.PlanAnswer] = {}
        while True:
            action = (ctl.private_route(obs, self.plan, self.history, self.control, answers)
                      if private else
                      ctl.step(obs, self.plan, self.history, now, self.control, answers))
            if not isinstance(action, ctl.Revise):
                return action
            answers[action.request.mode] = await self.revise(action)

    async def adopt_serving(self) -> bool:
        """Without a plan of its own (a fresh store), adopt the one already
        serving, if any: no rollout for what the data plane already runs."""
        current = await self.broadcaster.Current(bc.CurrentRequest(),
                                                 timeout=self.config.rpc_timeout_s)
        last = max(self.history.last_epoch, current.last_epoch, current.plan.epoch)
        self.history = replace(self.history, last_epoch=last)
        if not current.plan.epoch:
            return False
        self.plan = cv.plan_from_proto(current.plan)
        self.store.save_plan(self.plan, None)
        EPOCH.set(self.plan.epoch)
        return True

    # ---- one interval ---------------------------------------------------------------
    async def tick(self, now: float | None = None) -> ctl.Decision | None:
        async with self._lock:
            return await self._tick(time.time() if now is None else now)

    async def _tick(self, now: float) -> ctl.Decision | None:
        started = time.perf_counter()
        if now < self.history.retry_at:
            return None  # not even E(t): nothing would be rolled out anyway
        obs = await self.observe()
        self.history = ctl.observe(self.history, obs.env, self.control, now)
        if self.plan is None and obs.plannable and await self.adopt_serving():
            return None
        action = await self.decide(obs, now)
        if isinstance(action, ctl.Wait):
            if action.held_by_cooldown:
                DECISIONS.labels("cooldown").inc()
            return None
        return await self.carry_out(action, obs, now, started)

    async def carry_out(self, action: ctl.Keep | ctl.Reconfigure | ctl.Refuse,
                        obs: ctl.Observation, now: float, started: float) -> ctl.Decision:
        if isinstance(action, ctl.Refuse):
            raise Precondition(action.reason, field="privacy", error_reason=PRIVACY_UNSATISFIABLE)
        if isinstance(action, ctl.Keep):
            epoch = self.plan.epoch if self.plan else 0
            d = self._record(now, action.triggers, action.change, action.outcome,
                             action.old_cost, action.new_cost, epoch, epoch, action.reason)
            self.history = ctl.after(self.history, action, action.outcome, now, self.control)
            return d
        return await self._rollout(action, obs, now, started)

    async def _rollout(self, a: ctl.Reconfigure, obs: ctl.Observation, now: float,
                       started: float) -> ctl.Decision:
        old_epoch = self.plan.epoch if self.plan else 0
        c = self.config
        self.store.spend_epoch(a.plan.epoch)
        try:
            result = await self.broadcaster.Apply(
                oc.apply_request(a.plan, wire_dtype=c.wire_dtype,
                                 prepare_timeout_s=c.apply_timeout_s / 2),
                timeout=c.apply_timeout_s)
        except grpc.aio.AioRpcError as exc:
            return self._finish(a, ctl.Outcome.FAILED, now, old_epoch,
                                f"{exc.code().name}: {exc.details()}")
        if not result.committed:
            detail = "; ".join(
                f"{n.node_id}: {bc.RolloutState.Name(n.state).removeprefix('ROLLOUT_STATE_')} "
                f"{n.detail}" for n in result.nodes if n.state != bc.ROLLOUT_STATE_ABORTED)
            return self._finish(a, ctl.Outcome.ABORTED, now, old_epoch, detail)
        elapsed = time.perf_counter() - started
        self.plan, self.cost = a.plan, a.cost
        self.store.save_plan(a.plan, now)
        EPOCH.set(a.plan.epoch)
        TO_COMMIT.observe(elapsed)
        for t in a.triggers or [ctl.FIRST_PLAN]:
            RECONFIGS.labels(t).inc()
            self.reconfigurations[t] = self.reconfigurations.get(t, 0) + 1
        return self._finish(a, ctl.Outcome.COMMITTED, now, old_epoch, "", elapsed)

    def _finish(self, a: ctl.Reconfigure, outcome: ctl.Outcome, now: float, old_epoch: int,
                detail: str, elapsed: float = 0.0) -> ctl.Decision:
        self.history = ctl.after(self.history, a, outcome, now, self.control)
        new_epoch = a.plan.epoch if outcome is ctl.Outcome.COMMITTED else old_epoch
        return self._record(now, a.triggers, a.change, outcome, a.old_cost, a.cost, old_epoch,
                            new_epoch, detail, elapsed)

    def _record(self, now: float, fired: tuple[str, ...], change: ctl.Change,
                outcome: ctl.Outcome, old: CostBreakdown | None, new: CostBreakdown | None,
                old_epoch: int, new_epoch: int, detail: str, elapsed: float = 0.0
                ) -> ctl.Decision:
        last = self.last_decision
        if outcome is not ctl.Outcome.COMMITTED and last is not None \
                and last.outcome is outcome and last.triggers == fired \
                and last.change is change:
            DECISIONS.labels(outcome.value).inc()  # the same verdict again: count, don't store
            return last
        d = ctl.Decision(at=now, triggers=fired, change=change, outcome=outcome,
                         old_cost=old, new_cost=new, old_epoch=old_epoch,
                         new_epoch=new_epoch, detail=detail[:1000], trigger_to_commit_s=elapsed)
        d = replace(d, id=self.store.record(d))
        self.last_decision = d
        DECISIONS.labels(outcome.value).inc()
        log.info("decision %d: triggers=%s action=%s outcome=%s epoch %d->%d %s", d.id,
                 ",".join(fired) or "-", change.value, outcome.value, old_epoch, new_epoch,
                 detail[:200])
        return d

    # ---- privacy on demand -------------------------------------------------------------
    async def ensure_private_route(self, entry: str) -> tuple[int, bool]:
        """Make the plan keep sensitive layers on nodes ``entry`` trusts."""
        self.history = ctl.demand_privacy(self.history, time.time(), self.control)
        async with self._lock:
            obs = await self.observe()
            now = time.time()
            action = await self.decide(obs, now, private=True)
            if isinstance(action, ctl.Wait):
                assert self.plan is not None
                return self.plan.epoch, False
            d = await self.carry_out(action, obs, now, time.perf_counter())
            if d.outcome is not ctl.Outcome.COMMITTED:
                raise Unavailable(f"private route rollout {d.outcome.value}: {d.detail}")
            return d.new_epoch, True

    async def run(self) -> None:
        """One decision per interval, and one at once when a node of the plan
        dies (``watch_deaths``)."""
        watcher = asyncio.get_running_loop().create_task(self.watch_deaths())
        try:
            while True:
                start = time.monotonic()
                self._wake.clear()
                try:
                    await self.tick()
                except grpc.aio.AioRpcError as exc:
                    log.warning("control loop: %s %s", exc.code().name, exc.details())
                except Exception:
                    log.exception("control loop interval failed")
                left = self.config.interval_s - (time.monotonic() - start)
                try:
                    await asyncio.wait_for(self._wake.wait(), max(0.0, left))
                except TimeoutError:
                    pass
        finally:
            watcher.cancel()

    async def watch_deaths(self) -> None:
        """Follow the monitor's published states; wake the loop when a node of
        the plan is newly dead, so a failover waits for the monitor's verdict
        only, not for the rest of the interval as well (docs/architecture.md §2)."""
        dead: set[str] = set()
        while True:
            try:
                async for reply in self.monitor.WatchState(monitor_pb2.WatchStateRequest(),
                                                           timeout=WATCH_RENEW_S):
                    now_dead = {v.state.node_id for v in reply.state.nodes if not v.state.alive}
                    newly = (now_dead - dead) & self.plan.nodes if self.plan else set()
                    if newly:
                        log.info("plan node(s) dead: %s; deciding now", ", ".join(sorted(newly)))
                        self._wake.set()
                    dead = now_dead
            except grpc.aio.AioRpcError as exc:
                if exc.code() is not grpc.StatusCode.DEADLINE_EXCEEDED:  # else: renewed
                    log.debug("watching the monitor: %s", exc.code().name)
                    await asyncio.sleep(self.config.interval_s)


def status(loop: ControlLoop, now: float) -> pb.StatusResponse:
    at = loop.last_reconfigured_at
    left = 0.0 if at is None else max(0.0, loop.config.cooldown_s - (now - at))
    return oc.status_to_proto(loop.plan, loop.cost, loop.reconfigurations, at, left,
                              loop.last_decision)

