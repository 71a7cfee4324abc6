"""SQLite store of the orchestrator: every decision, and the plan in force so a
restarted orchestrator resumes without a new rollout."""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path

from edgesplit.core.control import Change, Decision, Outcome
from edgesplit.core.types import CostBreakdown, Plan
from edgesplit.rpc import convert as cv
from edgesplit.v1 import common_pb2

SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    triggers TEXT NOT NULL,
    action TEXT NOT NULL,
    old_cost BLOB,
    new_cost BLOB,
    outcome TEXT NOT NULL,
    trigger_to_commit_s REAL NOT NULL DEFAULT 0,
    old_epoch INTEGER NOT NULL,
    new_epoch INTEGER NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL);
"""


@dataclass
class Resumed:
    plan: Plan | None
    last_reconfigured_at: float | None
    reconfigurations: dict[str, int] = field(default_factory=dict)
    last_epoch: int = 0  # highest epoch ever tried (committed or not): never reused


class Store:
    def __init__(self, path: str) -> None:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # One connection guarded by a lock: decisions are rare (one per second
        # at most), so simplicity beats a pool.
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # Each commit is on disk before it returns: a spent epoch must stay spent
        # after a crash (WAL's default, NORMAL, may lose the last commits).
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    def record(self, d: Decision) -> int:
        """Store ``d`` (its enums by value, its costs as CostBreakdown messages)."""
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO decisions (at, triggers, action, old_cost, new_cost, outcome, "
                "trigger_to_commit_s, old_epoch, new_epoch, detail) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (d.at, json.dumps(list(d.triggers)), d.change.value, _cost_blob(d.old_cost),
                 _cost_blob(d.new_cost), d.outcome.value, d.trigger_to_commit_s, d.old_epoch,
                 d.new_epoch, d.detail))
            return int(cur.lastrowid or 0)

    def save_plan(self, plan: Plan, reconfigured_at: float | None) -> None:
        """Written after a commit, in one transaction with the timestamp (as the
        ``Plan`` message: the store is a boundary like an RPC)."""
        with self._lock:
            self._db.execute("BEGIN")
            self._db.execute("INSERT OR REPLACE INTO kv VALUES ('plan', ?)",
                             (cv.plan_to_proto(plan).SerializeToString(),))
            if reconfigured_at is not None:
                self._db.execute("INSERT OR REPLACE INTO kv VALUES ('reconfigured_at', ?)",
                                 (json.dumps(reconfigured_at).encode(),))
            self._db.execute("COMMIT")

    def spend_epoch(self, epoch: int) -> None:
        """Written before a rollout is asked for: an aborted one spends its epoch
        at the broadcaster and the agents, so a restarted orchestrator must not
        offer it again."""
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO kv VALUES ('last_epoch', ?)",
                             (json.dumps(epoch).encode(),))

    def resume(self) -> Resumed:
        with self._lock:
            rows = dict(self._db.execute("SELECT key, value FROM kv").fetchall())
            counts: dict[str, int] = {}
            for triggers, in self._db.execute(
                    "SELECT triggers FROM decisions WHERE outcome = 'committed'"):
                for t in json.loads(triggers) or ["initial"]:
                    counts[t] = counts.get(t, 0) + 1
        plan = None
        if "plan" in rows:
            plan = cv.plan_from_proto(common_pb2.Plan.FromString(rows["plan"]), "stored plan")
        at = json.loads(rows["reconfigured_at"]) if "reconfigured_at" in rows else None
        tried = max(json.loads(rows.get("last_epoch", b"0")), plan.epoch if plan else 0)
        return Resumed(plan, at, counts, tried)

    def history(self, limit: int, before_id: int = 0) -> list[Decision]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, at, triggers, action, old_cost, new_cost, outcome, "
                "trigger_to_commit_s, old_epoch, new_epoch, detail FROM decisions "
                "WHERE (? = 0 OR id < ?) ORDER BY id DESC LIMIT ?",
                (before_id, before_id, limit)).fetchall()
        return [Decision(at=at, triggers=tuple(json.loads(triggers)), change=Change(action),
                         outcome=Outcome(outcome), old_epoch=oe, new_epoch=ne, detail=detail,
                         trigger_to_commit_s=t2c, old_cost=_cost(old), new_cost=_cost(new),
                         id=id_)
                for (id_, at, triggers, action, old, new, outcome, t2c, oe, ne, detail) in rows]


def _cost_blob(c: CostBreakdown | None) -> bytes | None:
    return None if c is None else cv.cost_to_proto(c).SerializeToString()


def _cost(blob: bytes | None) -> CostBreakdown | None:
    return cv.cost_from_proto(common_pb2.CostBreakdown.FromString(blob)) if blob else None
