"""What a node holds per epoch, and the Prepare / Commit / Abort rules.

Every check runs before any state changes, so a refused assignment (bad
signature, another node's, stale, expired, a shard with the wrong digest)
leaves the node exactly as it was. What must survive a restart (the epoch
high-water mark, the aborted epochs, the committed assignment) is on disk
(``epoch_store.py``) before a Prepare, Commit or Abort is acknowledged, and a
Commit or Abort must carry the control plane's signed decision for the exact
assignment held (docs/architecture.md §12).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from edgesplit.core.types import Route, Segment
from edgesplit.model.base import SegmentRunner
from edgesplit.rpc.assignments import segment_parts
from edgesplit.rpc.convert import plan_from_proto, segment_from_proto, wire_dtype_from_proto
from edgesplit.rpc.errors import InvalidRequest, Precondition
from edgesplit.security.errors import ExpiredAssignment, StaleEpoch
from edgesplit.security.keys import agreement_public_from_bytes
from edgesplit.security.signing import (
    DECISION_DOMAIN,
    AssignmentVerdict,
    check_assignment,
    check_decision,
    payload_digest,
    verify_envelope,
)
from edgesplit.v1 import node_agent_pb2 as na
from services.node_agent.epoch_store import EpochRecord, EpochStore
from services.node_agent.link_salt import PeerLink, SaltBook

# (model digest, start, end, has_embed, has_head, shard digests) -> a runner
# holding exactly those weights; a different digest never reuses a runner.
RunnerKey = tuple[str, int, int, bool, bool, tuple[str, ...]]
Runner = SegmentRunner[Any]
RunnerFactory = Callable[[Segment, Mapping[str, str]], Runner]


@dataclass
class EpochState:
    """Everything one epoch's assignment gave this node."""

    epoch: int
    digest: bytes  # of the signed payload: recognises a re-delivered Prepare
    assignment: na.Assignment
    routes: dict[str, Route]  # route key (entry, entry#r for replicas) -> full route
    hops: dict[tuple[str, int], Segment]  # (route key, hop) -> segment this node runs
    runners: dict[tuple[str, int], Runner]  # (route key, hop) -> runner
    peers: dict[str, PeerLink]
    trusted: frozenset[str] = field(default_factory=frozenset)
    envelope: na.SignedEnvelope | None = None  # as received: what a commit persists

    @property
    def wire_dtype(self) -> str:
        return wire_dtype_from_proto(self.assignment.wire_dtype, "wire_dtype", "float32")


class EpochBook:
    """Prepared and committed epochs of one node, plus retained older ones."""

    def __init__(self, node_id: str, trusted_signers: Mapping[str, Ed25519PublicKey],
                 agreement_key: X25519PrivateKey, make_runner: RunnerFactory,
                 retained: int = 2, store: EpochStore | None = None,
                 max_epoch_step: int = 1000, salts: SaltBook | None = None) -> None:
        self.node_id = node_id
        self._store = store
        self.record = store.load() if store is not None else EpochRecord()
        self._max_step = max(1, max_epoch_step)
        self.salts = salts or SaltBook(node_id)
        self._signers = dict(trusted_signers)
        self._key = agreement_key
        self._make_runner = make_runner
        self._retain = retained
        self._runners: dict[RunnerKey, Runner] = {}
        self._lock = threading.Lock()
        self.committed: EpochState | None = None
        self.prepared: EpochState | None = None
        self.retired: dict[int, EpochState] = {}

    # ---- lookups -------------------------------------------------------------
    def get(self, epoch: int) -> EpochState | None:
        for es in (self.committed, self.prepared):
            if es is not None and es.epoch == epoch:
                return es
        return self.retired.get(epoch)

    def all_runners(self) -> list[Runner]:
        return list(self._runners.values())

    # ---- Prepare ------------------------------------------------------------
    def verify(self, envelope: na.SignedEnvelope, now_ms: int
               ) -> tuple[na.Assignment, bytes, AssignmentVerdict]:
        """Signature, then addressee/expiry/epoch; nothing changes here."""
        verify_envelope(envelope.payload, envelope.signature, envelope.key_id, self._signers)
        assignment = na.Assignment()
        try:
            assignment.ParseFromString(envelope.payload)
        except Exception as exc:
            raise InvalidRequest(f"assignment payload does not parse: {exc}") from exc
        digest = payload_digest(envelope.payload)
        held = [es for es in (self.committed, self.prepared) if es is not None]
        newest = max(held, key=lambda es: es.epoch) if held else None
        current, current_digest = (newest.epoch, newest.digest) if newest else (None, None)
        mark = self.record.high_water
        if mark and (current is None or mark > current):
            # Remembered across a restart: only the very bytes prepared at the
            # mark (and not aborted) are still welcome there.
            current, current_digest = mark, self.record.high_digest or None
        verdict = check_assignment(
            self.node_id, assignment.node_id, assignment.epoch, current,
            assignment.expires_at.ToMilliseconds(), now_ms, digest=digest,
            current_digest=current_digest)
        if assignment.epoch in self.record.spent:
            raise StaleEpoch(f"epoch {assignment.epoch} was aborted on {self.node_id}")
        self._check_step(assignment.epoch)
        return assignment, digest, verdict

    def _check_step(self, epoch: int) -> None:
        """An epoch advances by a bounded step (the broadcaster's rule, checked
        again here): one assignment at 2^63 must not spend the epoch space. A
        node that never held an epoch joins at whatever epoch the plan has."""
        mark = max(self.record.high_water, self.committed.epoch if self.committed else 0)
        if mark and epoch - mark > self._max_step:
            raise InvalidRequest(f"epoch {epoch} jumps more than {self._max_step} past "
                                 f"{mark} on {self.node_id}")

    def build(self, assignment: na.Assignment, digest: bytes) -> tuple[EpochState, int, int]:
        """Load this epoch's runners (verifying shard digests) without touching
        what serves now. Returns (state, runners built, runners reused)."""
        plan = plan_from_proto(assignment.plan, "assignment.plan")
        routes = {r.key: r for r in plan.routes}
        expected = {s.name: s.sha256 for s in assignment.shards}
        hops: dict[tuple[str, int], Segment] = {}
        for rs in assignment.segments:
            seg = segment_from_proto(rs.segment, "assignment.segments")
            route = routes.get(rs.entry)
            if seg.node != self.node_id or route is None or rs.hop >= len(route.segments) \
                    or route.segments[rs.hop] != seg:
                raise InvalidRequest(f"segment for route {rs.entry} hop {rs.hop} "
                                     "does not match the plan")
            hops[(rs.entry, rs.hop)] = seg
        built = reused = 0
        fresh: dict[RunnerKey, Runner] = {}
        runners: dict[tuple[str, int], Runner] = {}
        for key, seg in hops.items():
            parts = tuple(expected.get(p, "") for p in segment_parts(seg))
            rkey = (assignment.model_digest, seg.start, seg.end, seg.has_embed, seg.has_head,
                    parts)
            runner = self._runners.get(rkey) or fresh.get(rkey)
            if runner is None:
                runner = self._make_runner(seg, expected)  # raises on a bad digest
                fresh[rkey] = runner
                built += 1
            else:
                reused += 1
            runners[key] = runner
        peers = {p.node_id: self.salts.link(
            self._key, agreement_public_from_bytes(p.x25519_public), p.node_id, p.address,
            assignment.epoch) for p in assignment.peers if p.node_id != self.node_id}
        state = EpochState(assignment.epoch, digest, assignment, routes, hops, runners, peers,
                           frozenset(assignment.trusted_nodes))
        with self._lock:
            self._runners.update(fresh)
        return state, built, reused

    def set_prepared(self, state: EpochState, envelope: na.SignedEnvelope) -> None:
        state.envelope = envelope
        with self._lock:
            self.record.prepared(state.epoch, state.digest)
            self._save()  # before the Prepare is acknowledged
            self.prepared = state

    def resume(self) -> EpochState | None:
        """After a restart: serve the committed epoch again, from the signed
        assignment on disk (verified again: a rotated-out key resumes nothing)."""
        env = self.record.committed
        if env is None:
            return None
        verify_envelope(env.payload, env.signature, env.key_id, self._signers)
        assignment = na.Assignment.FromString(env.payload)
        if assignment.node_id != self.node_id:
            raise InvalidRequest(f"stored assignment is for {assignment.node_id!r}")
        state, _, _ = self.build(assignment, payload_digest(env.payload))
        state.envelope = env
        with self._lock:
            self.committed = state
        return state

    def _save(self) -> None:
        if self._store is not None:
            self._store.save(self.record)

    # ---- Commit / Abort --------------------------------------------------------
    def _decision(self, envelope: na.SignedEnvelope, action: int) -> na.RolloutDecision:
        verify_envelope(envelope.payload, envelope.signature, envelope.key_id, self._signers,
                        domain=DECISION_DOMAIN)
        try:
            decision = na.RolloutDecision.FromString(envelope.payload)
        except Exception as exc:
            raise InvalidRequest(f"decision payload does not parse: {exc}") from exc
        if decision.action != action:
            raise InvalidRequest(f"decision says {na.RolloutAction.Name(decision.action)}")
        return decision

    def commit(self, epoch: int, envelope: na.SignedEnvelope, now_ms: int) -> bool:
        """Returns True when the epoch was already committed (a retry)."""
        d = self._decision(envelope, na.ROLLOUT_ACTION_COMMIT)
        if not d.assignment_digest:
            raise InvalidRequest("a commit decision must name its assignment's digest")
        with self._lock:
            if self.committed is not None and self.committed.epoch == epoch:
                check_decision(self.node_id, d.node_id, d.epoch, epoch, d.assignment_digest,
                               self.committed.digest, d.expires_at_ms, now_ms)
                return True
            if self.prepared is None or self.prepared.epoch != epoch:
                raise Precondition(f"epoch {epoch} is not prepared on {self.node_id}")
            check_decision(self.node_id, d.node_id, d.epoch, epoch, d.assignment_digest,
                           self.prepared.digest, d.expires_at_ms, now_ms)
            if now_ms >= self.prepared.assignment.expires_at.ToMilliseconds():
                raise ExpiredAssignment(f"epoch {epoch}'s assignment expired before its commit")
            assert self.prepared.envelope is not None
            self.record.committed_as(epoch, self.prepared.envelope)
            self._save()  # before the switch, so before the Commit is acknowledged
            if self.committed is not None:
                self.retired[self.committed.epoch] = self.committed
                for old in sorted(self.retired)[:-self._retain or None]:
                    del self.retired[old]
            self.committed, self.prepared = self.prepared, None
            self._drop_unused_runners()
            return False

    def abort(self, epoch: int, envelope: na.SignedEnvelope, now_ms: int) -> None:
        """Spend ``epoch`` for good (on disk first) and drop it if prepared."""
        d = self._decision(envelope, na.ROLLOUT_ACTION_ABORT)
        self._check_step(epoch)
        with self._lock:
            if self.committed is not None and self.committed.epoch == epoch:
                raise Precondition(f"epoch {epoch} is committed on {self.node_id}")
            prepared = self.prepared is not None and self.prepared.epoch == epoch
            held = self.prepared.digest if prepared and self.prepared else None
            check_decision(self.node_id, d.node_id, d.epoch, epoch, d.assignment_digest, held,
                           d.expires_at_ms, now_ms)
            self.record.aborted(epoch)
            self._save()
            if prepared:
                self.prepared = None
                self._drop_unused_runners()

    def _drop_unused_runners(self) -> None:
        live = {id(r) for es in (self.committed, self.prepared, *self.retired.values())
                if es is not None for r in es.runners.values()}
        self._runners = {k: r for k, r in self._runners.items() if id(r) in live}
