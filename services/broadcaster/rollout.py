"""Two-phase rollout of a plan: Prepare everywhere, then Commit or Abort everywhere.

The old epoch serves throughout: Prepare loads the new one *beside* it, and
only when every node of the plan has prepared does the broadcaster decide to
commit. Any failure or timeout before that decision aborts on every node.

Epochs are used once. A plan's epoch must be newer than every epoch this
broadcaster has tried; re-applying the committed plan is a harmless duplicate
(it only re-drives commits that failed), and anything else at or below the
last tried epoch is FAILED_PRECONDITION. That keeps every assignment newer
than what any node holds, which is exactly the rule nodes enforce. An epoch
may also advance only by a bounded step (``max_epoch_step``): one Apply at
2^63 would otherwise spend the whole epoch space. Such a plan is refused
before anything is spent, so the next normal Apply still works.

What the broadcaster signs besides the plan (peers' addresses and X25519
keys, whom each entry trusts, the privacy depth) comes from its inventory
(``inventory.py``), never from the caller, and a node whose GetInfo key is not
the one enrolled there gets nothing signed. Commit and Abort are signed
decisions too, each naming the digest of the node's assignment it decides.
The rollout state (last tried epoch, committed plan, the committed
assignments' digests) is written atomically and fsync'd before anything is
sent to a node.
"""

from __future__ import annotations

import asyncio
import base64
import enum
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgesplit.core.trust import listed, untrusted_sensitive
from edgesplit.core.types import Plan
from edgesplit.rpc.assignments import (
    PeerInfo,
    ShardEntry,
    build_assignments,
    segment_parts,
    shard_key_context,
    sign_assignment,
    sign_decision,
    validate_route,
)
from edgesplit.rpc.convert import plan_from_proto, plan_to_proto
from edgesplit.rpc.errors import InvalidRequest, Precondition
from edgesplit.security.keys import agreement_public_from_bytes, write_secret_file
from edgesplit.security.shards import wrap_key
from edgesplit.security.signing import payload_digest
from edgesplit.v1 import common_pb2
from edgesplit.v1 import node_agent_pb2 as na
from services.broadcaster import metrics as m
from services.broadcaster.inventory import InventoryFile, check_plan_nodes, trusted_for
from services.broadcaster.nodes import NodeClients, NodeResult
from services.broadcaster.registry import ModelEntry, Registry
from services.monitor.loaders import ControlInventory

log = logging.getLogger(__name__)
META = "meta"


class Verdict(enum.Enum):
    NEW = "new"
    DUPLICATE = "duplicate"


def admit(plan: Plan, committed: Plan | None, last_tried: int, max_step: int) -> Verdict:
    """Whether a plan may roll out now (pure)."""
    if committed is not None and plan.epoch == committed.epoch:
        if plan == committed:
            return Verdict.DUPLICATE
        raise Precondition(f"epoch {plan.epoch} is already committed with another plan",
                           field="plan.epoch", error_reason="EPOCH_USED")
    if committed is not None and plan.epoch < committed.epoch:
        raise Precondition(f"epoch {plan.epoch} is older than the committed {committed.epoch}",
                           field="plan.epoch", error_reason="STALE_EPOCH")
    if plan.epoch <= last_tried:
        raise Precondition(f"epoch {plan.epoch} was already tried (and aborted); "
                           f"roll out with an epoch above {last_tried}",
                           field="plan.epoch", error_reason="EPOCH_USED")
    if plan.epoch - last_tried > max_step:
        raise InvalidRequest(f"epoch {plan.epoch} jumps more than {max_step} past the last "
                             f"tried {last_tried}", field="plan.epoch")
    return Verdict.NEW


def grants_of(plan: Plan, model: ModelEntry) -> dict[str, frozenset[str]]:
    """Node -> digests of the shards its segments need (what it may fetch; pure)."""
    out: dict[str, set[str]] = {}
    common = {model.shards[META].sha256} if META in model.shards else set()
    for route in plan.routes:
        for seg in route.segments:
            mine = out.setdefault(seg.node, set(common))
            mine.update(model.shards[p].sha256 for p in segment_parts(seg) if p in model.shards)
    return {node: frozenset(shas) for node, shas in out.items()}


def leaky_routes(plan: Plan, trusted_nodes: Sequence[str], privacy_depth: int
                 ) -> dict[str, tuple[str, ...]]:
    """Route key (the entry; ``entry#r`` for a replica) -> untrusted nodes holding
    its sensitive parts, for routes a privacy=high request may not use. The entries run this same check
    (``core.trust``) on the same signed list, so this is what they will refuse."""
    rule = listed(trusted_nodes)
    out = {r.key: untrusted_sensitive(r, privacy_depth, rule) for r in plan.routes}
    return {key: tuple(nodes) for key, nodes in out.items() if nodes}


@dataclass(frozen=True)
class ApplyOptions:
    """Per-call settings, already merged with the broadcaster's defaults."""

    prepare_timeout_s: float
    wire_dtype: str = "float32"


@dataclass
class RolloutResult:
    committed: bool
    epoch: int
    nodes: list[NodeResult]
    elapsed_s: float
    duplicate: bool = False


class Rollout:
    """The rollout state machine plus what it must remember across restarts."""

    def __init__(self, registry: Registry, signing_key: Ed25519PrivateKey, clients: NodeClients,
                 state_path: str | Path, inventory: InventoryFile,
                 assignment_ttl_s: float = 600.0, max_epoch_step: int = 1000) -> None:
        self.registry = registry
        self._key = signing_key
        self.clients = clients
        self._state_path = Path(state_path)
        self.inventory = inventory
        self._ttl_s = assignment_ttl_s
        self._max_step = max(1, max_epoch_step)
        self._lock = asyncio.Lock()  # one rollout at a time
        self.current: Plan | None = None
        self._last_tried = 0
        self._uncommitted: set[str] = set()  # decided, but Commit failed there
        self._digests: dict[str, bytes] = {}  # node -> its committed assignment's digest
        self._load()
        self._granted: dict[str, frozenset[str]] = self._grants(self.current)
        self._pending: dict[str, frozenset[str]] = {}

    # ---- queries ---------------------------------------------------------------
    @property
    def last_epoch(self) -> int:
        return self._last_tried

    def may_fetch(self, node_id: str, sha256: str) -> bool:
        """Shards go only to nodes assigned them in the committed or the
        preparing epoch. Defence in depth: blobs are encrypted and only the
        assigned node can unwrap the key (node ids are self-declared unless
        mTLS pins them)."""
        return sha256 in self._granted.get(node_id, ()) or sha256 in self._pending.get(node_id, ())

    # ---- Apply -----------------------------------------------------------------
    async def apply(self, plan: Plan, opts: ApplyOptions) -> RolloutResult:
        """Roll out; shielded, so a caller that gives up (deadline, cancel)
        never leaves nodes prepared but neither committed nor aborted."""
        task = asyncio.ensure_future(self._apply(plan, opts))
        task.add_done_callback(_log_orphan_failure)
        return await asyncio.shield(task)

    async def _apply(self, plan: Plan, opts: ApplyOptions) -> RolloutResult:
        start = time.perf_counter()
        async with self._lock:
            inventory = self.inventory.current()
            verdict = admit(plan, self.current, self._last_tried, self._max_step)
            check_plan_nodes(plan, inventory)
            if verdict is Verdict.DUPLICATE:
                nodes = await self._recommit(plan, inventory)
                m.ROLLOUTS.labels("duplicate").inc()
                return RolloutResult(not self._uncommitted, plan.epoch, nodes,
                                     time.perf_counter() - start, duplicate=True)
            model = self.registry.model(plan.model_digest)
            if model is None:
                raise Precondition(f"the registry holds no model {plan.model_digest!r}")
            for route in plan.routes:
                validate_route(route, model.num_layers)
            self._last_tried = plan.epoch  # from here on the epoch is spent
            self._save()
            result = await self._two_phase(plan, model, inventory, opts)
        result.elapsed_s = time.perf_counter() - start
        outcome = "committed" if result.committed else (
            "partial" if self.current == plan else "aborted")
        m.ROLLOUTS.labels(outcome).inc()
        m.ROLLOUT_SECONDS.labels(outcome).observe(result.elapsed_s)
        if result.committed:
            leaks = leaky_routes(plan, trusted_for(plan, inventory), inventory.privacy_depth)
            m.PRIVATE_ROUTES.set(len(plan.routes) - len(leaks))
            for entry, holders in sorted(leaks.items()):
                log.info("epoch %d: privacy=high requests at %s are refused (sensitive parts "
                         "on %s, not in the trusted nodes)", plan.epoch, entry, ", ".join(holders))
        log.info("epoch %d %s in %.3fs: %s", plan.epoch, outcome, result.elapsed_s,
                 ", ".join(f"{n.node_id}={n.state}{'/' + n.code if n.code else ''}"
                           for n in result.nodes))
        return result

    async def _two_phase(self, plan: Plan, model: ModelEntry, inventory: ControlInventory,
                         opts: ApplyOptions) -> RolloutResult:
        nodes = sorted(plan.nodes)
        addresses = {n: inventory.nodes.index[n].address for n in nodes}
        old_epoch = self.current.epoch if self.current else 0
        keys = await asyncio.gather(*(self.clients.check_key(n, addresses[n],
                                                             inventory.agreement_keys[n])
                                      for n in nodes), return_exceptions=True)
        failed = [NodeResult(n, "failed").failed(k) for n, k in zip(nodes, keys)
                  if isinstance(k, BaseException)]
        if failed:
            results = failed + [NodeResult(n, "aborted") for n, k in zip(nodes, keys)
                                if not isinstance(k, BaseException)]
            return await self._abort(plan, addresses, results, old_epoch, {})
        envelopes = await asyncio.to_thread(self._sign, plan, model, inventory, opts)
        digests = {n: payload_digest(env.payload) for n, env in envelopes.items()}
        self._pending = self._grants(plan, model)  # before Prepare: nodes fetch while preparing
        results = list(await asyncio.gather(*(
            self.clients.prepare(n, addresses[n], envelopes[n], opts.prepare_timeout_s)
            for n in nodes)))
        if not all(r.ok for r in results):
            return await self._abort(plan, addresses, results, old_epoch, digests)
        # Decision point: every node holds the new epoch, so it is committed.
        # The decision is on disk before any Commit leaves: a crash after one
        # node switched still restarts with the new plan (and every node to
        # re-drive), never with the old one.
        self.current, self._granted, self._pending = plan, self._pending, {}
        self._uncommitted, self._digests = set(nodes), digests
        self._save()
        commits = await asyncio.gather(*(self.clients.commit(n, addresses[n],
                                                             self._commit_request(n, plan.epoch))
                                         for n in nodes))
        for r, (code, detail) in zip(results, commits):
            r.state = "failed" if code else "committed"
            r.code, r.detail = code, detail
        self._uncommitted = {r.node_id for r in results if not r.ok}
        self._save()
        m.EPOCH.set(plan.epoch)
        return RolloutResult(not self._uncommitted, plan.epoch, results, 0.0)

    async def _abort(self, plan: Plan, addresses: Mapping[str, str], results: list[NodeResult],
                     old_epoch: int, digests: Mapping[str, bytes]) -> RolloutResult:
        # Every node of the plan, prepared or not: Abort is harmless where
        # nothing was prepared (the node still spends the epoch), and a Prepare
        # that timed out here may still have finished there.
        expires = self._expiry()
        await asyncio.gather(*(self.clients.abort(n, addresses[n], na.AbortRequest(
            epoch=plan.epoch, decision=sign_decision(
                n, plan.epoch, digests.get(n, b""), na.ROLLOUT_ACTION_ABORT, self._key,
                expires))) for n in sorted(plan.nodes)))
        self._pending = {}
        for r in results:
            if r.ok:
                r.state = "aborted"
            elif r.code in ("PERMISSION_DENIED", "UNAUTHENTICATED", "FAILED_PRECONDITION"):
                self.clients.forget(r.node_id)  # re-read its key next time (re-keyed node?)
        return RolloutResult(False, old_epoch, sorted(results, key=lambda r: r.node_id), 0.0)

    async def _recommit(self, plan: Plan, inventory: ControlInventory) -> list[NodeResult]:
        """A duplicate Apply re-sends Commit where it failed before; else a no-op."""
        if not self._uncommitted:
            return []
        pending = sorted(self._uncommitted)
        commits = await asyncio.gather(*(
            self.clients.commit(n, inventory.nodes.index[n].address,
                                self._commit_request(n, plan.epoch))
            for n in pending))
        results = [NodeResult(n, "failed" if code else "committed", code, detail)
                   for n, (code, detail) in zip(pending, commits)]
        self._uncommitted = {r.node_id for r in results if not r.ok}
        self._save()
        return results

    def _expiry(self) -> int:
        return int((time.time() + self._ttl_s) * 1000)

    def _commit_request(self, node: str, epoch: int) -> na.CommitRequest:
        """The signed Commit of ``node``'s assignment (its digest was kept)."""
        return na.CommitRequest(epoch=epoch, decision=sign_decision(
            node, epoch, self._digests.get(node, b""), na.ROLLOUT_ACTION_COMMIT, self._key,
            self._expiry()))

    def _sign(self, plan: Plan, model: ModelEntry, inventory: ControlInventory,
              opts: ApplyOptions) -> dict[str, na.SignedEnvelope]:
        keys: Mapping[str, bytes] = inventory.agreement_keys
        peers = {n: PeerInfo(n, inventory.nodes.index[n].address, keys[n]) for n in plan.nodes}

        def wrap(node: str, shard: ShardEntry) -> bytes:
            return wrap_key(self.registry.key(shard.sha256), agreement_public_from_bytes(keys[node]),
                            shard_key_context(node, shard.sha256))

        expires = self._expiry()
        unsigned = build_assignments(
            plan, model.shards, peers, model.num_layers, expires, opts.wire_dtype,
            trusted_for(plan, inventory), inventory.privacy_depth,
            common_shards=[META] if META in model.shards else [], wrap=wrap)
        return {n: sign_assignment(a, self._key) for n, a in unsigned.items()}

    def _grants(self, plan: Plan | None, model: ModelEntry | None = None
                ) -> dict[str, frozenset[str]]:
        if plan is None:
            return {}
        model = model or self.registry.model(plan.model_digest)
        return grants_of(plan, model) if model is not None else {}

    # ---- persistence -------------------------------------------------------------
    def _save(self) -> None:
        raw = {
            "last_tried": self._last_tried,
            "plan": base64.b64encode(plan_to_proto(self.current).SerializeToString()).decode()
            if self.current else "",
            "uncommitted": sorted(self._uncommitted),
            "digests": {n: d.hex() for n, d in sorted(self._digests.items())},
        }
        # Temp file, fsync, rename (and the directory fsync'd): a crash leaves
        # the old state or the new, and an acknowledged epoch is on disk.
        write_secret_file(self._state_path, json.dumps(raw, indent=1, sort_keys=True).encode())

    def _load(self) -> None:
        if not self._state_path.exists():
            return
        raw = json.loads(self._state_path.read_text())
        self._last_tried = int(raw.get("last_tried", 0))
        self._uncommitted = set(raw.get("uncommitted", []))
        self._digests = {n: bytes.fromhex(d) for n, d in raw.get("digests", {}).items()}
        if raw.get("plan"):
            self.current = plan_from_proto(
                common_pb2.Plan.FromString(base64.b64decode(raw["plan"])))
            m.EPOCH.set(self.current.epoch)


def _log_orphan_failure(task: asyncio.Future[RolloutResult]) -> None:
    # Its caller may be gone (shielded); still mark the exception retrieved and log it.
    if not task.cancelled() and task.exception() is not None:
        log.info("rollout refused or failed: %s", task.exception())
