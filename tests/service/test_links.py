"""Link streams between real node agents on real gRPC: acks on receipt,
a bounded window, reconnect after a break, and the fake runner end to end
(the data plane never needs torch)."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import grpc
import pytest

from edgesplit.core.types import Segment
from edgesplit.model.fake import FakeSegmentRunner
from edgesplit.model.pipeline import generate as local_generate
from edgesplit.rpc.errors import Unavailable
from edgesplit.rpc.server import Registration, create_server
from edgesplit.rpc.transport import LOOPBACK_PLAINTEXT, Transport
from edgesplit.testbed import ROOT, ensure_model
from edgesplit.v1 import node_agent_pb2 as na
from edgesplit.v1 import node_agent_pb2_grpc as na_grpc
from services.node_agent.config import NodeAgentConfig
from services.node_agent.linkstream import StreamLink, ack_error
from tests.service.cluster import Cluster

LAYERS = 6
PROMPT = [3, 9, 27, 41, 5]


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("model")  # for the tokenizer; the runners are fakes
    return ensure_model(base / "model", base / "shards", layers=LAYERS, hidden=32)


def fake_factory(gate: dict[int, threading.Event] | None = None) -> Any:
    """Fake runners; a runner starting at a layer in ``gate`` waits for its event."""

    class Gated(FakeSegmentRunner):
        def forward(self, session_id: str, hidden: Any, start_pos: int) -> Any:
            event = (gate or {}).get(self.spec.start)
            if event is not None and self.spec.num_layers:
                assert event.wait(30), "gate never opened"
            return super().forward(session_id, hidden, start_pos)

    def make(seg: Segment, digests: Mapping[str, str]) -> FakeSegmentRunner:
        return Gated(seg.start, seg.end, seg.has_embed, seg.has_head)

    return make


def fake_reference(cuts: list[int], n: int, prompt: list[int] = PROMPT) -> list[int]:
    bounds = [0, *cuts, LAYERS]
    runners = [FakeSegmentRunner(a, b, has_embed=i == 0)
               for i, (a, b) in enumerate(itertools.pairwise(bounds))]
    runners.append(FakeSegmentRunner(LAYERS, LAYERS, has_head=True))
    return local_generate(runners, prompt, n)


async def test_fake_runner_across_real_agents(shards: Path, tmp_path: Path) -> None:
    c = await Cluster.start(3, shards, tmp_path, make_runner=fake_factory())
    try:
        await c.apply(c.plan(["node-0", "node-1", "node-2"]))
        want = fake_reference([2, 4], 10)
        assert len(set(want)) > 1, "degenerate reference"
        got = await c.generate(PROMPT, 10)
        assert got == want[:len(got)] and got
        # Several sessions at once on the same links give the same tokens.
        together = await asyncio.gather(*(c.generate(PROMPT, 10) for _ in range(4)))
        assert all(t == got for t in together)
    finally:
        await c.stop()


async def test_the_ack_does_not_wait_for_the_receivers_compute(shards: Path,
                                                               tmp_path: Path) -> None:
    gate = {2: threading.Event()}  # node-1 runs layers [2, 4): held until released
    c = await Cluster.start(3, shards, tmp_path, make_runner=fake_factory(gate))
    try:
        await c.apply(c.plan(["node-0", "node-1", "node-2"]))
        request = asyncio.create_task(c.generate(PROMPT, 3))
        links = c.agents[0].links
        for _ in range(300):  # until node-0 has sent its frame to node-1
            if links._links:
                break
            await asyncio.sleep(0.01)
        link = next(iter(links._links.values()))
        for _ in range(300):
            if link.in_flight == 0:
                break
            await asyncio.sleep(0.01)
        assert link.in_flight == 0, "the frame is acked while node-1 still computes"
        assert not request.done()
        gate[2].set()
        assert await asyncio.wait_for(request, 60)  # and the request completes
    finally:
        gate[2].set()
        await c.stop()


class HeldAcks(na_grpc.NodeAgentServicer):
    """A peer that acks only when the test says so."""

    def __init__(self) -> None:
        self.release: asyncio.Queue[None] = asyncio.Queue()
        self.received = 0

    async def Link(self, request_iterator: Any, context: Any) -> AsyncIterator[na.LinkAck]:
        async for msg in request_iterator:
            self.received += 1
            await self.release.get()
            yield na.LinkAck(seq=msg.seq)


async def _peer(servicer: Any, port: int = 0) -> Any:
    config = NodeAgentConfig(node_id="peer", listen=f"127.0.0.1:{port}", insecure=True)
    return await create_server(config, [Registration(
        na_grpc.add_NodeAgentServicer_to_server, servicer, "edgesplit.v1.NodeAgent")])


def _end(session: str) -> na.LinkMessage:
    return na.LinkMessage(end_session=na.EndSession(session_id=session, epoch=1))


async def test_window_bounds_messages_in_flight() -> None:
    peer = HeldAcks()
    server = await _peer(peer)
    channel = Transport(LOOPBACK_PLAINTEXT).aio_channel(f"127.0.0.1:{server.port}")
    link = StreamLink(na_grpc.NodeAgentStub(channel), "peer", window=2, lifetime_s=60)
    try:
        first = [await link.send(_end(f"s{i}")) for i in range(2)]
        third = asyncio.create_task(link.send(_end("s2")))
        done, _ = await asyncio.wait({third}, timeout=0.3)
        assert not done and link.in_flight == 2  # back-pressure: the sender waits
        peer.release.put_nowait(None)
        ack = await asyncio.wait_for(first[0], 10)
        assert ack_error(ack) is None
        fut = await asyncio.wait_for(third, 10)  # a slot came free
        for _ in range(2):
            peer.release.put_nowait(None)
        assert ack_error(await asyncio.wait_for(fut, 10)) is None
        assert peer.received == 3
    finally:
        await link.close()
        await channel.close()
        await server.server.stop(0)


class AckAll(na_grpc.NodeAgentServicer):
    async def Link(self, request_iterator: Any, context: Any) -> AsyncIterator[na.LinkAck]:
        async for msg in request_iterator:
            yield na.LinkAck(seq=msg.seq)


async def test_link_reconnects_after_the_peer_restarts() -> None:
    held = HeldAcks()
    server = await _peer(held)
    port = server.port
    channel = Transport(LOOPBACK_PLAINTEXT).aio_channel(f"127.0.0.1:{port}", reconnect_cap_s=0.2)
    link = StreamLink(na_grpc.NodeAgentStub(channel), "peer", window=4, lifetime_s=60)
    try:
        pending = await link.send(_end("s0"))
        await server.server.stop(0)  # the peer goes away with a message unacked
        with pytest.raises(Unavailable):
            await asyncio.wait_for(pending, 10)
        assert link.in_flight == 0  # its window slot came back
        server = await _peer(AckAll(), port)  # back on the same port
        for _ in range(100):
            try:
                ack = await asyncio.wait_for(await link.send(_end("s1")), 5)
                break
            except Unavailable:
                await asyncio.sleep(0.1)
        assert ack_error(ack) is None
    finally:
        await link.close()
        await channel.close()
        await server.server.stop(0)


def test_the_data_plane_imports_no_torch() -> None:
    code = ("import sys; import services.node_agent.__main__, services.node_agent.stage, "
            "services.node_agent.entry; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "False"


async def test_a_broken_link_fails_the_step_and_the_entry_replays(shards: Path,
                                                                 tmp_path: Path) -> None:
    c = await Cluster.start(3, shards, tmp_path, make_runner=fake_factory(),
                            step_timeout_s=5)
    try:
        await c.apply(c.plan(["node-0", "node-1", "node-2"]))
        want = await c.generate(PROMPT, 4)
        await c.servers[2].server.stop(0)  # node-2 dies; the plan still names it
        request = asyncio.create_task(c.generate(PROMPT, 4))
        await asyncio.sleep(0.3)
        assert not request.done()  # the step failed; the entry waits for a new epoch
        # The failover plan's commit wakes the entry, which replays on the new route.
        await c.apply(c.plan(["node-0", "node-1"]))
        assert await asyncio.wait_for(request, 30) == want
    finally:
        await c.stop()


async def test_a_cancelled_request_frees_every_nodes_sessions(shards: Path,
                                                             tmp_path: Path) -> None:
    from edgesplit.v1 import inference_pb2

    c = await Cluster.start(3, shards, tmp_path, make_runner=fake_factory())
    try:
        await c.apply(c.plan(["node-0", "node-1", "node-2"]))
        call = c.inference().Generate(inference_pb2.GenerateRequest(
            token_ids=inference_pb2.TokenIds(ids=PROMPT), max_new_tokens=200,
            stop_token_ids=[]), timeout=60)
        await call.read()
        await call.read()
        call.cancel()  # the entry generates ahead of the stream; all of it must stop

        def live() -> int:
            return sum(r.session_count() for a in c.agents
                       for r in a.control.book.all_runners())

        for _ in range(200):
            if live() == 0:
                break
            await asyncio.sleep(0.02)
        assert live() == 0
    finally:
        await c.stop()


class AsAnAgentAcks(na_grpc.NodeAgentServicer):
    """Acks as an agent does: a refusal (a frame for session "bad") at once and
    alone, accepted messages only when asked, one ack for all of them."""

    def __init__(self) -> None:
        self.asked: list[bool] = []

    async def Link(self, request_iterator: Any, context: Any) -> AsyncIterator[na.LinkAck]:
        async for msg in request_iterator:
            self.asked.append(msg.ack_now)
            if msg.frame.header.session_id == "bad":
                yield na.LinkAck(seq=msg.seq, code=grpc.StatusCode.NOT_FOUND.value[0])
            elif msg.ack_now:
                yield na.LinkAck(seq=msg.seq)


def _frame(session: str) -> na.LinkMessage:
    return na.LinkMessage(frame=na.Frame(header=na.FrameHeader(session_id=session)))


async def test_accepted_frames_are_acked_together_and_a_refusal_alone() -> None:
    peer = AsAnAgentAcks()
    server = await _peer(peer)
    channel = Transport(LOOPBACK_PLAINTEXT).aio_channel(f"127.0.0.1:{server.port}")
    link = StreamLink(na_grpc.NodeAgentStub(channel), "peer", window=8, lifetime_s=60,
                      timed_every_s=60.0)
    try:
        first = await link.send(_frame("s"))  # the first is timed: acked at once
        assert ack_error(await asyncio.wait_for(first, 10)) is None
        two = [await link.send(_frame("s")) for _ in range(2)]
        bad = await link.send(_frame("bad"))
        assert ack_error(await asyncio.wait_for(bad, 10))[0] == "NOT_FOUND"
        await asyncio.sleep(0.05)
        assert not any(f.done() for f in two)  # accepted, owed, not acked one by one
        more = [await link.send(_frame("s")) for _ in range(2)]  # half the window: asks
        acks = await asyncio.wait_for(asyncio.gather(*two, *more), 10)
        assert all(ack_error(a) is None for a in acks)
        assert acks[0].seq == more[-1].result().seq  # one ack covered them all
        assert peer.asked == [True, False, False, False, False, True]
        assert link.in_flight == 0
    finally:
        await link.close()
        await channel.close()
        await server.server.stop(0)


async def test_an_agent_acks_frames_together_and_what_it_owes_at_the_streams_end(
        shards: Path, tmp_path: Path) -> None:
    c = await Cluster.start(3, shards, tmp_path, make_runner=fake_factory())
    try:
        await c.apply(c.plan(["node-0", "node-1", "node-2"]))
        prompt = [5, 6, 7, 8]  # its 40 tokens hold no eos
        got = await c.generate(prompt, 40)
        assert got == fake_reference([2, 4], 40, prompt)
        link = c.agents[0].links.get("node-1", c.addresses["node-1"])
        stream = link._stream
        assert stream is not None and stream.seq >= len(got)
        assert stream.acks <= stream.seq // 4, (stream.acks, stream.seq)  # not one each
        link._retire(stream)  # half-closed, as at half its lifetime ...
        link._stream = None
        for _ in range(200):
            if link.in_flight == 0:
                break
            await asyncio.sleep(0.01)
        assert link.in_flight == 0  # ... the agent acked what it owed, none failed
    finally:
        await c.stop()


def _started_at_close() -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("edgesplit_ring_steps_started_at_close_total") or 0.0


async def test_the_entry_starts_the_next_ring_step_as_the_last_one_closes(
        shards: Path, tmp_path: Path) -> None:
    """The entry's batch embeds each new token and runs hop 0 in the hand-off
    that closed the ring; the tokens are those of a step-by-step run, and a
    request that stops (eos, or its last token) leaves nothing behind."""
    c = await Cluster.start(3, shards, tmp_path, make_runner=fake_factory())
    try:
        await c.apply(c.plan(["node-0", "node-1", "node-2"]))
        before = _started_at_close()
        prompt = [5, 6, 7, 8]  # no eos in its 40 tokens
        assert await c.generate(prompt, 40) == fake_reference([2, 4], 40, prompt)
        assert _started_at_close() - before >= 35  # nearly every step after the first
        want = fake_reference([2, 4], 10)  # stops at eos after two tokens
        assert await c.generate(PROMPT, 10) == want[:2]
        together = await asyncio.gather(*(c.generate(prompt, 12) for _ in range(4)))
        assert all(t == fake_reference([2, 4], 12, prompt) for t in together)
        entry = c.agents[0]
        for _ in range(200):
            live = sum(r.session_count() for a in c.agents for r in a.control.book.all_runners())
            if live == 0 and not entry.stage._waiting:
                break
            await asyncio.sleep(0.02)
        assert live == 0 and not entry.stage._waiting  # no step left waiting, no KV held
    finally:
        await c.stop()


async def test_a_route_on_the_entry_alone_steps_as_before(shards: Path, tmp_path: Path) -> None:
    """The whole ring on one node: its next step would close in the same
    hand-off, before the entry waits for it, so it is not started there."""
    c = await Cluster.start(1, shards, tmp_path, make_runner=fake_factory())
    try:
        await c.apply(c.plan(["node-0"]))
        before = _started_at_close()
        prompt = [5, 6, 7, 8]
        assert await c.generate(prompt, 20) == fake_reference([], 20, prompt)
        assert _started_at_close() == before
    finally:
        await c.stop()
