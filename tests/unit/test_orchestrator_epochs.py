"""The orchestrator's epoch counter outlives a restart: an epoch handed to the
broadcaster is committed to SQLite first, and a restarted loop resumes above it
(real SQLite file, real ControlLoop)."""

from __future__ import annotations

from pathlib import Path

from services.orchestrator.config import OrchestratorConfig
from services.orchestrator.loop import ControlLoop
from services.orchestrator.store import Store


def test_a_spent_epoch_is_durable_and_resumed(tmp_path: Path) -> None:
    db = str(tmp_path / "orch.sqlite")
    store = Store(db)
    assert store.resume().last_epoch == 0
    store.spend_epoch(7)
    store.spend_epoch(9)
    assert store._db.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
    store.close()
    assert Store(db).resume().last_epoch == 9


async def test_a_restarted_loop_plans_above_the_tried_epoch(tmp_path: Path) -> None:
    db = str(tmp_path / "orch.sqlite")
    Store(db).spend_epoch(41)  # tried (and perhaps aborted) before a crash, nothing committed
    loop = ControlLoop(OrchestratorConfig(db=db), Store(db))
    try:
        assert loop.plan is None and loop.history.last_epoch == 41
    finally:
        await loop.close()
