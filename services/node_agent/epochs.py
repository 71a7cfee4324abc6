"""What a node holds per epoch, and the Prepare / Commit / Abort rules.

Every check runs before any state changes, so a refused assignment (bad
signature, another node's, stale, expired, a shard with the wrong digest)
leaves the node exactly as it was.
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
from edgesplit.rpc.convert import plan_from_proto, segment_from_proto
from edgesplit.rpc.errors import InvalidRequest, Precondition
from edgesplit.security.channel import FrameOpener, FrameSealer, LinkKeys
from edgesplit.security.keys import agreement_public_from_bytes
from edgesplit.security.signing import (
    AssignmentVerdict,
    check_assignment,
    payload_digest,
    verify_envelope,
)
from edgesplit.v1 import node_agent_pb2 as na

# (model digest, start, end, has_embed, has_head, shard digests) -> a runner
# holding exactly those weights; a different digest never reuses a runner.
RunnerKey = tuple[str, int, int, bool, bool, tuple[str, ...]]
Runner = SegmentRunner[Any]
RunnerFactory = Callable[[Segment, Mapping[str, str]], Runner]


@dataclass
class PeerLink:
    """Frame keys with one peer in one epoch."""

    address: str
    sealer: FrameSealer
    opener: FrameOpener


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

    @property
    def wire_dtype(self) -> str:
        return self.assignment.wire_dtype or "float32"


class EpochBook:
    """Prepared and committed epochs of one node, plus retained older ones."""

    def __init__(self, node_id: str, trusted_signers: Mapping[str, Ed25519PublicKey],
                 agreement_key: X25519PrivateKey, make_runner: RunnerFactory,
                 retained: int = 2) -> None:
        self.node_id = node_id
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
        verdict = check_assignment(
            self.node_id, assignment.node_id, assignment.epoch,
            newest.epoch if newest else None, assignment.expires_at_ms, now_ms,
            digest=digest, current_digest=newest.digest if newest else None)
        return assignment, digest, verdict

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
        peers = {}
        for p in assignment.peers:
            keys = LinkKeys.derive(self._key, agreement_public_from_bytes(p.x25519_public),
                                   self.node_id, p.node_id, assignment.epoch)
            peers[p.node_id] = PeerLink(p.address, keys.sealer(), keys.opener())
        state = EpochState(assignment.epoch, digest, assignment, routes, hops, runners, peers,
                           frozenset(assignment.trusted_nodes))
        with self._lock:
            self._runners.update(fresh)
        return state, built, reused

    def set_prepared(self, state: EpochState) -> None:
        with self._lock:
            self.prepared = state

    # ---- Commit / Abort --------------------------------------------------------
    def commit(self, epoch: int) -> bool:
        """Returns True when the epoch was already committed (a retry)."""
        with self._lock:
            if self.committed is not None and self.committed.epoch == epoch:
                return True
            if self.prepared is None or self.prepared.epoch != epoch:
                raise Precondition(f"epoch {epoch} is not prepared on {self.node_id}")
            if self.committed is not None:
                self.retired[self.committed.epoch] = self.committed
                for old in sorted(self.retired)[:-self._retain or None]:
                    del self.retired[old]
            self.committed, self.prepared = self.prepared, None
            self._drop_unused_runners()
            return False

    def abort(self, epoch: int) -> None:
        with self._lock:
            if self.prepared is not None and self.prepared.epoch == epoch:
                self.prepared = None
                self._drop_unused_runners()

    def _drop_unused_runners(self) -> None:
        live = {id(r) for es in (self.committed, self.prepared, *self.retired.values())
                if es is not None for r in es.runners.values()}
        self._runners = {k: r for k, r in self._runners.items() if id(r) in live}
