"""Algorithm 1 of the seed, for real: every interval read E(t), evaluate the
triggers, try a placement-only change, then a full re-split, adopt only a
clearly better plan, roll it out, and record the decision.

The decisions themselves are the pure core's (``edgesplit.core.triggers``);
this module gathers inputs over gRPC and carries the result out.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import grpc
from prometheus_client import Counter, Gauge, Histogram

from edgesplit.core.triggers import (
    TriggerConfig,
    decide_revision,
    evaluate_triggers,
    untrusted_sensitive_nodes,
)
from edgesplit.core.types import ClusterState, Mode
from edgesplit.rpc import convert as cv
from edgesplit.rpc.convert_monitor import environment_from_proto
from edgesplit.rpc.errors import Precondition, Unavailable
from edgesplit.rpc.transport import Transport, TransportSettings
from edgesplit.v1 import broadcaster_pb2 as bc
from edgesplit.v1 import broadcaster_pb2_grpc as bc_grpc
from edgesplit.v1 import common_pb2, monitor_pb2, monitor_pb2_grpc
from edgesplit.v1 import orchestrator_pb2 as pb
from edgesplit.v1 import split_reviser_pb2 as sr
from edgesplit.v1 import split_reviser_pb2_grpc as sr_grpc
from services.orchestrator.config import OrchestratorConfig
from services.orchestrator.store import Store

log = logging.getLogger(__name__)

EPOCH = Gauge("edgesplit_orchestrator_epoch", "Epoch of the plan in force")
RECONFIGS = Counter("edgesplit_reconfigurations_total", "Committed reconfigurations, by trigger",
                    ["trigger"])
DECISIONS = Counter("edgesplit_decisions_total", "Control-loop decisions, by outcome",
                    ["outcome"])
TO_COMMIT = Histogram("edgesplit_trigger_to_commit_seconds", "Trigger to committed rollout",
                      buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60))


@dataclass
class Proposal:
    plan: common_pb2.Plan
    cost: common_pb2.CostBreakdown
    action: str


class ControlLoop:
    def __init__(self, config: OrchestratorConfig, store: Store,
                 transport: Transport | None = None) -> None:
        self.config = config
        self.store = store
        resumed = store.resume()
        self.plan: common_pb2.Plan | None = resumed.plan
        self.last_reconfigured_at = resumed.last_reconfigured_at
        self.reconfigurations = resumed.reconfigurations
        self.cost: common_pb2.CostBreakdown | None = None
        self.last_decision: pb.Decision | None = None
        self.private_until = 0.0
        # Epochs are single-use at the broadcaster and the agents: after an
        # aborted rollout the next plan needs a newer epoch than the one tried.
        self.last_epoch = self.plan.epoch if self.plan else 0
        self.first_heard: float | None = None
        self.rate: float | None = None  # measured requests per second (EWMA)
        self._last_count: tuple[int, float] | None = None
        self.retry_at = 0.0  # monotonic: no rollout before this after a failed one
        # After "keep" (no plan better by the margin), the same non-urgent
        # triggers are not re-planned every interval: the answer would not change
        # until the state does. Failover and privacy are never held back.
        self.quiet_until = 0.0
        self.triggers = TriggerConfig(
            latency_ewma_s=config.latency_trigger_s, max_utilization=config.utilization_trigger,
            min_link_bandwidth_bps=config.bandwidth_trigger_bps, cooldown_s=config.cooldown_s,
            privacy_depth=config.privacy_depth)
        self._lock = asyncio.Lock()  # one rollout at a time
        transport = transport or Transport(TransportSettings.of(config))
        self._channels = [transport.aio_channel(a) for a in (config.monitor, config.split_reviser,
                                                             config.broadcaster)]
        self.monitor = monitor_pb2_grpc.MonitorStub(self._channels[0])
        self.reviser = sr_grpc.SplitReviserStub(self._channels[1])
        self.broadcaster = bc_grpc.BroadcasterStub(self._channels[2])
        if self.plan is not None:
            EPOCH.set(self.plan.epoch)

    async def close(self) -> None:
        for ch in self._channels:
            await ch.close()

    # ---- inputs ----------------------------------------------------------------
    def observe_rate(self, state: monitor_pb2.EnvironmentState) -> None:
        """Request rate from the monitor's finished-request count (EWMA), so the
        planner judges node load by the traffic actually served."""
        if self._last_count is not None and state.at > self._last_count[1]:
            done, at = self._last_count
            sample = max(0, state.requests_total - done) / (state.at - at)
            self.rate = sample if self.rate is None else 0.8 * self.rate + 0.2 * sample
        self._last_count = (state.requests_total, state.at)

    def workload(self, privacy_high: bool) -> common_pb2.Workload:
        c = self.config
        # The configured rate until traffic has been seen (a floor keeps an idle
        # moment from planning as if no load would ever come).
        rate = max(self.rate, 0.05) if self.rate else c.requests_per_s
        return common_pb2.Workload(
            prompt_tokens=c.prompt_tokens, new_tokens=c.new_tokens,
            requests_per_s=rate, privacy_depth=c.privacy_depth,
            privacy=common_pb2.PRIVACY_HIGH if privacy_high else common_pb2.PRIVACY_LOW)

    async def state(self) -> monitor_pb2.EnvironmentState:
        return await self.monitor.GetState(monitor_pb2.GetStateRequest(),
                                           timeout=self.config.rpc_timeout_s)

    def entries(self) -> list[str]:
        if self.config.entries:
            return list(self.config.entries)
        return [r.entry for r in self.plan.routes] if self.plan else []

    def _ready_for_first_plan(self, state: monitor_pb2.EnvironmentState) -> bool:
        """Every enrolled node reporting and every link between them measured,
        or ``initial_wait_s`` since the first node was heard: a first plan made
        while agents still start would leave them out until the next trigger."""
        alive = [v for v in state.nodes if v.state.alive and v.reports]
        if not alive:
            return False
        if self.first_heard is None:
            self.first_heard = time.monotonic()
        complete = len(alive) == len(state.nodes) and not self.missing_links(state)
        return complete or time.monotonic() >= self.first_heard + self.config.initial_wait_s

    def missing_links(self, state: monitor_pb2.EnvironmentState) -> list[tuple[str, str]]:
        alive = [v.state.node_id for v in state.nodes if v.state.alive]
        have = {(link.src, link.dst) for link in state.links}
        return [(a, b) for a in alive for b in alive if a != b and (a, b) not in have]

    def cluster(self, state: monitor_pb2.EnvironmentState) -> common_pb2.ClusterState:
        """Nodes and links for the planner; a link nobody has measured yet gets
        the configured assumption rather than ruling out every route over it."""
        links = list(state.links)
        for a, b in self.missing_links(state):
            links.append(common_pb2.LinkState(
                src=a, dst=b, rtt_s=self.config.default_link_rtt_s,
                bandwidth_bps=self.config.default_link_bandwidth_bps))
        return common_pb2.ClusterState(nodes=[v.state for v in state.nodes], links=links)

    async def revise(self, state: monitor_pb2.EnvironmentState, mode: int,
                     privacy_high: bool) -> sr.ReviseResponse:
        c = self.config
        cluster = self.cluster(state)
        req = sr.ReviseRequest(
            state=cluster, profile=state.profile, workload=self.workload(privacy_high),
            mode=mode, weights=common_pb2.ObjectiveWeights(alpha=c.alpha, beta=c.beta,
                                                           gamma=c.gamma),
            entries=self.entries(), epoch=self.last_epoch + 1)
        if self.plan is not None:
            req.current.CopyFrom(self.plan)
        return await self.reviser.Revise(req, timeout=c.rpc_timeout_s)

    async def apply(self, plan: common_pb2.Plan, state: monitor_pb2.EnvironmentState
                    ) -> bc.ApplyResponse:
        addresses = {v.state.node_id: v.state.address for v in state.nodes if v.state.address}
        self.last_epoch = max(self.last_epoch, plan.epoch)
        # Trust comes from the monitor's inventory, the one place it is configured:
        # nodes trusted by every entry of the plan may hold sensitive layers.
        entries = {r.entry for r in plan.routes}
        trusted = [v.state.node_id for v in state.nodes if v.state.trust == common_pb2.TRUST_TRUSTED
                   and (not v.state.trusted_by or entries <= set(v.state.trusted_by))]
        return await self.broadcaster.Apply(
            bc.ApplyRequest(plan=plan, addresses=addresses, trusted_nodes=trusted,
                            wire_dtype=self.config.wire_dtype,
                            privacy_depth=self.config.privacy_depth,
                            prepare_timeout_s=self.config.apply_timeout_s / 2),
            timeout=self.config.apply_timeout_s)

    # ---- one interval ------------------------------------------------------------
    async def tick(self, now: float | None = None) -> pb.Decision | None:
        async with self._lock:
            return await self._tick(time.time() if now is None else now)

    async def _tick(self, now: float) -> pb.Decision | None:
        started = time.perf_counter()
        if time.monotonic() < self.retry_at:
            return None
        state = await self.state()
        self.observe_rate(state)
        if not state.nodes or not state.profile.layers:
            return None
        if self.plan is None:
            current = await self.broadcaster.Current(bc.CurrentRequest(),
                                                     timeout=self.config.rpc_timeout_s)
            self.last_epoch = max(self.last_epoch, current.last_epoch, current.plan.epoch)
            if current.plan.epoch:  # a plan is already serving: adopt it, no rollout
                self.plan = current.plan
                self.store.save_plan(current.plan, None)
                EPOCH.set(current.plan.epoch)
                return None
            if not self._ready_for_first_plan(state):
                return None  # agents are still starting or probing their links
            return await self._initial(state, now, started)
        if self.config.static:
            return None
        env = environment_from_proto(state)
        cluster = cv.cluster_from_proto(self.cluster(state))
        privacy_high = now < self.private_until
        decision = evaluate_triggers(
            env, cv.plan_from_proto(self.plan), cluster, self.last_reconfigured_at, now,
            self.triggers, privacy_violation=privacy_high and not self._route_private(cluster))
        fired = sorted({t.kind.value for t in decision.fired})
        if not decision.act:
            if fired and decision.suppressed_by_cooldown:
                DECISIONS.labels("cooldown").inc()
            return None
        urgent = any(t.urgent for t in decision.fired)
        if not urgent and time.monotonic() < self.quiet_until:
            return None
        d = await self._revise_and_apply(state, now, started, fired, privacy_high)
        if d.outcome in ("rejected_margin", "infeasible") and not urgent:
            self.quiet_until = time.monotonic() + self.config.cooldown_s / 2
        return d

    def _route_private(self, cluster: ClusterState) -> bool:
        assert self.plan is not None
        nodes = {n.node_id: n for n in cluster.nodes}
        return not any(untrusted_sensitive_nodes(r, nodes, self.config.privacy_depth)
                       for r in cv.plan_from_proto(self.plan).routes)

    async def _initial(self, state: monitor_pb2.EnvironmentState, now: float,
                       started: float) -> pb.Decision:
        reply = await self.revise(state, common_pb2.PLAN_MODE_RESPLIT, now < self.private_until)
        if not reply.feasible:
            return self._record(now, [], "resplit", None, reply.cost, "infeasible", 0, 0,
                                reply.reason)
        return await self._rollout(Proposal(reply.plan, reply.cost, "resplit"), state, now,
                                   started, ["initial"])

    async def _revise_and_apply(self, state: monitor_pb2.EnvironmentState, now: float,
                                started: float, fired: list[str],
                                privacy_high: bool) -> pb.Decision:
        assert self.plan is not None
        placement = await self.revise(state, common_pb2.PLAN_MODE_PLACEMENT, privacy_high)
        current = cv.cost_from_proto(placement.current_cost) \
            if placement.HasField("current_cost") else None
        p_cost = cv.cost_from_proto(placement.cost) if placement.feasible else None
        verdict = decide_revision(current, p_cost, None, self.config.margin)
        resplit = None
        broken = current is None or not current.feasible
        if verdict.try_resplit or broken:
            # A broken plan (dead node) adopts any feasible one: then weigh the
            # re-split too, rather than the first placement that merely works.
            resplit = await self.revise(state, common_pb2.PLAN_MODE_RESPLIT, privacy_high)
            r_cost = cv.cost_from_proto(resplit.cost) if resplit.feasible else None
            if broken and p_cost is not None and r_cost is not None \
                    and r_cost.total < p_cost.total:
                verdict = decide_revision(current, None, r_cost, self.config.margin)
            elif not broken or p_cost is None:
                verdict = decide_revision(current, p_cost, r_cost, self.config.margin)
        old_cost = placement.current_cost if placement.HasField("current_cost") else None
        if verdict.adopt is None:
            best = resplit if resplit is not None and resplit.feasible else placement
            outcome = "infeasible" if not best.feasible else "rejected_margin"
            return self._record(now, fired, "keep", old_cost, best.cost, outcome,
                                self.plan.epoch, self.plan.epoch, verdict.reason)
        chosen = placement if verdict.adopt is Mode.PLACEMENT else resplit
        assert chosen is not None
        action = "migrate" if verdict.adopt is Mode.PLACEMENT else "resplit"
        return await self._rollout(Proposal(chosen.plan, chosen.cost, action), state, now,
                                   started, fired, old_cost)

    async def _rollout(self, p: Proposal, state: monitor_pb2.EnvironmentState, now: float,
                       started: float, fired: list[str],
                       old_cost: common_pb2.CostBreakdown | None = None) -> pb.Decision:
        old_epoch = self.plan.epoch if self.plan else 0
        try:
            result = await self.apply(p.plan, state)
        except grpc.aio.AioRpcError as exc:
            self.retry_at = time.monotonic() + self.config.retry_backoff_s
            return self._record(now, fired, p.action, old_cost, p.cost, "failed", old_epoch,
                                old_epoch, f"{exc.code().name}: {exc.details()}")
        if not result.committed:
            self.retry_at = time.monotonic() + self.config.retry_backoff_s
            detail = "; ".join(f"{n.node_id}: {n.state} {n.detail}" for n in result.nodes
                               if n.state != "aborted")
            return self._record(now, fired, p.action, old_cost, p.cost, "aborted", old_epoch,
                                old_epoch, detail)
        elapsed = time.perf_counter() - started
        self.plan, self.cost, self.last_reconfigured_at = p.plan, p.cost, now
        self.store.save_plan(p.plan, now)
        EPOCH.set(p.plan.epoch)
        TO_COMMIT.observe(elapsed)
        for t in fired or ["initial"]:
            RECONFIGS.labels(t).inc()
            self.reconfigurations[t] = self.reconfigurations.get(t, 0) + 1
        return self._record(now, fired, p.action, old_cost, p.cost, "committed", old_epoch,
                            p.plan.epoch, "", elapsed)

    def _record(self, now: float, fired: list[str], action: str,
                old: common_pb2.CostBreakdown | None, new: common_pb2.CostBreakdown | None,
                outcome: str, old_epoch: int, new_epoch: int, detail: str,
                elapsed: float = 0.0) -> pb.Decision:
        last = self.last_decision
        if outcome != "committed" and last is not None and last.outcome == outcome \
                and list(last.triggers) == fired and last.action == action:
            DECISIONS.labels(outcome).inc()  # the same verdict again: count, don't store
            return last
        d = pb.Decision(at=now, triggers=fired, action=action, outcome=outcome,
                        trigger_to_commit_s=elapsed, old_epoch=old_epoch, new_epoch=new_epoch,
                        detail=detail[:1000])
        if old is not None:
            d.old_cost.CopyFrom(old)
        if new is not None:
            d.new_cost.CopyFrom(new)
        d.id = self.store.record(d)
        self.last_decision = d
        DECISIONS.labels(outcome).inc()
        log.info("decision %d: triggers=%s action=%s outcome=%s epoch %d->%d %s", d.id,
                 ",".join(fired) or "-", action, outcome, old_epoch, new_epoch, detail[:200])
        return d

    # ---- privacy on demand -----------------------------------------------------------
    async def ensure_private_route(self, entry: str) -> tuple[int, bool]:
        """Make the plan keep sensitive layers on nodes ``entry`` trusts."""
        self.private_until = time.time() + self.config.privacy_hold_s
        async with self._lock:
            state = await self.state()
            cluster = cv.cluster_from_proto(self.cluster(state))
            if self.plan is not None and self._route_private(cluster):
                return self.plan.epoch, False
            if self.config.static:
                raise Precondition("static mode: the plan is not changed for privacy")
            reply = await self.revise(state, common_pb2.PLAN_MODE_RESPLIT, True)
            if not reply.feasible:
                raise Precondition(f"no plan keeps sensitive layers on trusted nodes: "
                                   f"{reply.reason}")
            d = await self._rollout(Proposal(reply.plan, reply.cost, "resplit"), state,
                                    time.time(), time.perf_counter(), ["privacy"])
            if d.outcome != "committed":
                raise Unavailable(f"private route rollout {d.outcome}: {d.detail}")
            return d.new_epoch, True

    async def run(self) -> None:
        while True:
            start = time.monotonic()
            try:
                await self.tick()
            except grpc.aio.AioRpcError as exc:
                log.warning("control loop: %s %s", exc.code().name, exc.details())
            except Exception:
                log.exception("control loop interval failed")
            await asyncio.sleep(max(0.0, self.config.interval_s - (time.monotonic() - start)))


def status(loop: ControlLoop, now: float) -> pb.OrchestratorStatus:
    s = pb.OrchestratorStatus(reconfigurations=loop.reconfigurations)
    if loop.plan is not None:
        s.plan.CopyFrom(loop.plan)
    if loop.cost is not None:
        s.cost.CopyFrom(loop.cost)
    if loop.last_reconfigured_at is not None:
        s.last_reconfigured_at = loop.last_reconfigured_at
        s.cooldown_left_s = max(0.0, loop.config.cooldown_s - (now - loop.last_reconfigured_at))
    if loop.last_decision is not None:
        s.last_decision.CopyFrom(loop.last_decision)
    return s
