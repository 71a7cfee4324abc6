"""Epochs survive restarts: replayed, aborted, foreign and far-future
assignments and forged decisions are refused before and after an agent
restarts, and change nothing (docs/architecture.md §12).

Three real agents with mTLS and a real model; the test holds the
broadcaster's certificate and the control signing key, as the broadcaster
would, and a client's certificate for Generate.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from edgesplit.rpc.assignments import abort_request, commit_request, sign_decision
from edgesplit.security.keys import generate_signing_key
from edgesplit.testbed import ensure_model
from edgesplit.v1 import node_agent_pb2 as na
from tests.security.agent_ring import Ring, code_of

REFUSED = grpc.StatusCode.FAILED_PRECONDITION


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("model")
    return ensure_model(base / "model", base / "shards", layers=4, hidden=64)


@pytest.fixture
async def ring(shards: Path, tmp_path: Path) -> AsyncIterator[Ring]:
    r = await Ring.start(tmp_path, shards)
    yield r
    await r.stop()


def _record(ring: Ring, node: str) -> dict[str, object]:
    return json.loads((ring.tmp / node / "epochs.json").read_text())


async def _held(ring: Ring, node: str) -> tuple[int, int]:
    info = await ring.info(node)
    return info.committed_epoch, info.prepared_epoch


async def test_old_aborted_and_foreign_assignments_refused_before_and_after_restart(
        ring: Ring) -> None:
    await ring.apply(ring.plan(1))
    await ring.apply(ring.plan(2))
    tokens = await ring.generate()
    old = ring.envelopes[("node-1", 1)]  # unexpired, validly signed, superseded
    skipped = ring.sign(ring.plan(3))["node-1"]  # signed, never delivered: below the mark
    aborted = ring.sign(ring.plan(4))["node-1"]
    await ring.prepare("node-1", aborted)
    await ring.abort("node-1", 4)
    foreign = ring.sign(ring.plan(5))["node-2"]  # another node's, newer epoch
    record = _record(ring, "node-1")  # on disk before the Abort's ack
    assert (record["high_water"], record["spent"]) == (4, [4])

    async def replays_refused() -> None:
        for env in (old, skipped, aborted, foreign):
            assert await code_of(ring.prepare("node-1", env)) == REFUSED
        # ... and Commits of what is not held: the aborted epoch, the old one.
        assert await code_of(ring.commit("node-1", 4)) == REFUSED
        assert await code_of(ring.commit("node-1", 1)) == REFUSED
        assert await _held(ring, "node-1") == (2, 0)

    await replays_refused()
    await ring.restart("node-1")
    info = await ring.info("node-1")
    assert info.committed_epoch == 2  # resumed from its own record, not rolled back
    assert [(s.segment.start, s.segment.end) for s in info.segments] == [(1, 3)]
    await replays_refused()
    assert await ring.generate() == tokens  # the whole ring serves as before
    # The node still takes the next real epoch.
    await ring.apply(ring.plan(6))
    assert await ring.generate() == tokens


async def test_forged_unsigned_and_misbound_decisions_change_nothing(ring: Ring) -> None:
    await ring.apply(ring.plan(1))
    env = ring.sign(ring.plan(2))["node-1"]
    await ring.prepare("node-1", env)
    stub = ring.stub("node-1")
    mallory = generate_signing_key()
    cases = {
        "unsigned": (na.CommitRequest(epoch=2), grpc.StatusCode.PERMISSION_DENIED),
        "other key": (commit_request(env, mallory), grpc.StatusCode.PERMISSION_DENIED),
        "other node": (na.CommitRequest(epoch=2, decision=sign_decision(
            "node-2", 2, b"x" * 32, na.ROLLOUT_ACTION_COMMIT, ring.control, 2**62)), REFUSED),
        "other assignment": (na.CommitRequest(epoch=2, decision=sign_decision(
            "node-1", 2, b"x" * 32, na.ROLLOUT_ACTION_COMMIT, ring.control, 2**62)), REFUSED),
        "expired": (commit_request(env, ring.control, ttl_s=-1), REFUSED),
        "abort as commit": (na.CommitRequest(epoch=2, decision=abort_request(
            "node-1", 2, ring.control, env).decision), grpc.StatusCode.INVALID_ARGUMENT),
    }
    for name, (request, code) in cases.items():
        assert await code_of(stub.Commit(request, timeout=5)) == code, name
    forged_abort = abort_request("node-1", 2, mallory, env)
    assert await code_of(stub.Abort(forged_abort, timeout=5)) == grpc.StatusCode.PERMISSION_DENIED
    assert await code_of(ring.abort("node-1", 1)) == REFUSED  # the committed epoch
    assert await _held(ring, "node-1") == (1, 2)
    await ring.commit("node-1", 2)  # the real decision still works
    assert await _held(ring, "node-1") == (2, 0)


async def test_an_epoch_jump_to_2_63_is_refused_without_spending_the_epoch_space(
        ring: Ring) -> None:
    await ring.apply(ring.plan(1))
    tokens = await ring.generate()
    far = ring.sign(ring.plan(2**63))["node-1"]
    assert await code_of(ring.prepare("node-1", far)) == grpc.StatusCode.INVALID_ARGUMENT
    far_abort = abort_request("node-1", 2**63, ring.control)
    assert await code_of(ring.stub("node-1").Abort(far_abort, timeout=5)) \
        == grpc.StatusCode.INVALID_ARGUMENT
    await ring.restart("node-1")
    assert _record(ring, "node-1")["high_water"] == 1
    await ring.apply(ring.plan(2))  # the next normal epoch is still open
    assert await _held(ring, "node-1") == (2, 0)
    assert await ring.generate() == tokens


async def test_a_prepare_retried_across_a_restart_is_taken_again(ring: Ring) -> None:
    """The mark keeps the prepared bytes' digest: the broadcaster's retry of
    the very same Prepare still succeeds after the node restarted, and the
    Commit that follows switches it."""
    await ring.apply(ring.plan(1))
    record = _record(ring, "node-1")  # the Commit's ack came after this was on disk
    assert record["high_water"] == 1 and record["committed"]
    env = ring.sign(ring.plan(2))["node-1"]
    other = ring.sign(ring.plan(2), ttl_s=500)["node-1"]  # same epoch, other bytes
    ring.envelopes[("node-1", 2)] = env
    await ring.prepare("node-1", env)
    await ring.restart("node-1")
    assert await _held(ring, "node-1") == (1, 0)
    assert await code_of(ring.prepare("node-1", other)) == REFUSED
    again = await ring.prepare("node-1", env)
    assert not again.duplicate  # built again: the runners died with the process
    await ring.commit("node-1", 2)
    assert await _held(ring, "node-1") == (2, 0)


async def test_a_commit_after_the_assignment_expired_is_refused(ring: Ring) -> None:
    await ring.apply(ring.plan(1))
    env = ring.sign(ring.plan(2), ttl_s=1.0)["node-1"]
    await ring.prepare("node-1", env)
    await asyncio.sleep(1.2)
    assert await code_of(ring.commit("node-1", 2)) == REFUSED  # a fresh decision, stale bytes
    assert await _held(ring, "node-1") == (1, 2)
