"""Rollout control on a node: Prepare / Commit / Abort (docs/data-plane.md).

One rollout step at a time. A commit wakes whoever waits for an epoch (the
entry after a failure, or for the private route it asked the orchestrator
for) at once, instead of polling.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from edgesplit.security.signing import AssignmentVerdict
from edgesplit.v1 import node_agent_pb2 as na
from services.node_agent import metrics as m
from services.node_agent.epochs import EpochBook, EpochState
from services.node_agent.shards import ShardStore

log = logging.getLogger(__name__)


class Control:
    def __init__(self, book: EpochBook, shards: ShardStore | None = None) -> None:
        self.book = book
        self.shards = shards  # hook: fetches shards missing locally (shards.py)
        self._lock = asyncio.Lock()
        self._committed = asyncio.Condition()

    async def prepare(self, envelope: na.SignedEnvelope, time_left_s: float | None
                      ) -> na.PrepareResponse:
        async with self._lock:
            assignment, digest, verdict = self.book.verify(envelope, _now_ms())
            if verdict is AssignmentVerdict.DUPLICATE and self.book.get(assignment.epoch):
                return na.PrepareResponse(epoch=assignment.epoch, duplicate=True)
            # (a duplicate of the epoch at the mark not held: prepared before a restart)
            # hook: fetch (and verify) shards not held yet, within this call's deadline
            fetched = await self.shards.ensure(assignment, time_left_s) \
                if self.shards is not None else None
            # Loading weights is torch work: keep it off the event loop.
            state, built, reused = await asyncio.get_running_loop().run_in_executor(
                None, self.book.build, assignment, digest)
            self.book.set_prepared(state, envelope)  # on disk before the ack
            # Swap link salts with the peers now, so the first frames find them.
            self.book.salts.greet_soon({n: p.address for n, p in state.peers.items()})
            log.info("prepared epoch %d (%d runners built, %d reused)",
                     assignment.epoch, built, reused)
            got, held = fetched if fetched is not None else (built, reused)
            return na.PrepareResponse(epoch=assignment.epoch, shards_fetched=got,
                                      shards_cached=held)

    async def commit(self, epoch: int, decision: na.SignedEnvelope) -> bool:
        """True when ``epoch`` was committed already (a retry)."""
        async with self._lock:
            duplicate = self.book.commit(epoch, decision, _now_ms())
        m.EPOCH.set(epoch)
        if not duplicate:
            log.info("committed epoch %d", epoch)
            async with self._committed:
                self._committed.notify_all()
        return duplicate

    async def abort(self, epoch: int, decision: na.SignedEnvelope) -> int:
        """Spend ``epoch`` (drop it if prepared); returns the epoch still committed (0: none)."""
        async with self._lock:
            self.book.abort(epoch, decision, _now_ms())
        committed = self.book.committed
        return committed.epoch if committed else 0

    async def committed_when(self, ready: Callable[[EpochState], bool],
                             timeout_s: float) -> EpochState | None:
        """The committed epoch once ``ready`` holds for it, or None after ``timeout_s``."""
        def check() -> bool:
            es = self.book.committed
            return es is not None and ready(es)

        async with self._committed:
            try:
                await asyncio.wait_for(self._committed.wait_for(check), timeout_s)
            except TimeoutError:
                return None
        return self.book.committed

    def info(self, node_id: str, public: bytes, device: str) -> na.NodeInfo:
        info = na.NodeInfo(node_id=node_id, x25519_public=public, device=device)
        if self.book.committed is not None:
            info.committed_epoch = self.book.committed.epoch
            info.segments.extend(self.book.committed.assignment.segments)
        if self.book.prepared is not None:
            info.prepared_epoch = self.book.prepared.epoch
        runners = self.book.all_runners()
        info.sessions = sum(r.session_count() for r in runners)
        info.kv_cache_bytes = sum(r.kv_bytes() for r in runners)
        return info


def _now_ms() -> int:
    return int(time.time() * 1000)


def evict_idle(book: EpochBook, idle_timeout_s: float) -> None:
    """Drop idle sessions and keep the gauges current."""
    runners: list[Any] = book.all_runners()
    for r in runners:
        r.evict_idle(time.monotonic(), idle_timeout_s)
    m.KV_BYTES.set(sum(r.kv_bytes() for r in runners))
    m.SESSIONS.set(sum(r.session_count() for r in runners))
