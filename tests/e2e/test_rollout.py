"""Rollouts through a real broadcaster to real node-agent processes that hold
no model: every shard reaches them encrypted from the registry.

One test bed serves the whole module (starting processes and importing torch
is most of the cost); each test derives its epochs from the broadcaster's
current plan, so the tests also pass alone or in another order.
"""

from __future__ import annotations

import hashlib
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from edgesplit import testbed as tb
from edgesplit.bedpki import PKI_DIR, LocalPki, service
from edgesplit.core.types import Plan
from edgesplit.rpc.convert import plan_from_proto, plan_to_proto
from edgesplit.security.identity import Role
from edgesplit.security.keys import ensure_dev_keys, generate_signing_key
from edgesplit.security.signing import sign_envelope
from edgesplit.testbed import ensure_model, plan_from_cuts
from edgesplit.v1 import broadcaster_pb2 as bpb
from edgesplit.v1 import broadcaster_pb2_grpc as bpb_grpc
from edgesplit.v1 import node_agent_pb2 as na
from tests.conftest import ServiceProcess, start_service

PROMPT = [5, 17, 42, 99, 7]
NEW_TOKENS = 8
LAYERS = 4
NODES = ("node-0", "node-1", "node-2")


@dataclass
class Rig:
    tmp: Path
    bed: tb.Testbed
    broadcaster: ServiceProcess
    stub: bpb_grpc.BroadcasterStub
    reference: list[int]

    @property
    def addresses(self) -> dict[str, str]:
        return {n.node_id: n.address for n in self.bed.nodes}

    def current(self) -> Plan | None:
        plan = self.stub.Current(bpb.CurrentRequest(), timeout=10).plan
        return plan_from_proto(plan) if plan.epoch else None

    def plan(self, cuts: tuple[int, int], epoch: int | None = None) -> Plan:
        """A plan for these cuts; by default with the next unused epoch."""
        last = self.stub.Current(bpb.CurrentRequest(), timeout=10).last_epoch
        digest = self.bed.manifest().model_digest
        return plan_from_cuts(NODES, cuts, LAYERS, digest, epoch if epoch is not None else last + 1)

    def apply(self, plan: Plan, **kw: object) -> bpb.ApplyResponse:
        req = bpb.ApplyRequest(plan=plan_to_proto(plan), **kw)  # type: ignore[arg-type]
        return self.stub.Apply(req, timeout=120)

    def committed(self) -> Plan:
        """The committed plan, rolling one out first if nothing is."""
        cur = self.current()
        if cur is None:
            assert self.apply(self.plan((1, 3))).committed
            cur = self.current()
        assert cur is not None
        return cur

    def tokens(self) -> list[int]:
        replies = self.bed.generate("node-0", token_ids=PROMPT, max_new_tokens=NEW_TOKENS)
        return [r.token_id for r in replies]

    def node_view(self) -> dict[str, tuple[int, int, bytes]]:
        out = {}
        for n in NODES:
            info = self.bed.info(n)
            segs = b"".join(s.SerializeToString(deterministic=True) for s in info.segments)
            out[n] = (info.committed_epoch, info.prepared_epoch, segs)
        return out


def _reference(model_dir: Path) -> list[int]:
    """transformers' own greedy generate over the whole model: the ground truth."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    ids = torch.tensor([PROMPT])
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW_TOKENS,
                         do_sample=False)
    return [int(t) for t in out[0, len(PROMPT):]]


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    tmp = tmp_path_factory.mktemp("rollout")
    shard_dir = ensure_model(tmp / "model", tmp / "shards", layers=LAYERS, hidden=64)
    base = tmp / "bed"
    ensure_dev_keys(base / "keys", "control")  # the bed's control key signs for the broadcaster
    pki = LocalPki(base / PKI_DIR)  # one CA for the broadcaster and the bed
    broadcaster = start_service("broadcaster", tmp, pki=pki, args=[
        "--state-dir", str(tmp / "bc"), "--shard-dir", str(shard_dir),
        "--signing-key", str(base / "keys" / "control.ed25519.pem"),
        "--inventory", str(base / tb.INVENTORY)])  # written by Testbed.up
    try:
        # No local shards: the last --shard-dir wins over the one Testbed.up passes.
        bed = tb.Testbed.up(len(NODES), shard_dir, base,
                         extra_args=["--shard-dir", "", "--broadcaster", broadcaster.address])
    except BaseException:
        broadcaster.stop()
        raise
    # Apply is the orchestrator's call: the tests drive the broadcaster as it would.
    channel = bed.transport(service(Role.ORCHESTRATOR)).sync_channel(broadcaster.address)
    try:
        yield Rig(tmp, bed, broadcaster, bpb_grpc.BroadcasterStub(channel),
                  _reference(tmp / "model"))
    finally:
        channel.close()
        bed.down()
        broadcaster.stop()


def test_apply_rolls_out_encrypted_shards_and_generation_matches(rig: Rig) -> None:
    cur = rig.current()
    plan = rig.plan((1, 3))
    reply = rig.apply(plan)
    assert reply.committed, reply
    assert reply.epoch == plan.epoch
    if cur is None:  # a first rollout: every node had to fetch
        assert all(n.shards_fetched > 0 for n in reply.nodes), reply
    for n in NODES:
        cache = rig.tmp / "bed" / n / "shards"
        assert any(cache.iterdir()), f"{n} holds no fetched shards"
    assert rig.tokens() == rig.reference


def test_abort_leaves_every_node_serving_the_old_epoch(rig: Rig) -> None:
    old = rig.committed()
    before = rig.node_view()
    # node-0 will need layer.1 for cuts (2, 3): make sure it must fetch it, and
    # that what it fetches is corrupt (one flipped bit in the stored ciphertext).
    layer1 = rig.bed.manifest().shard("layer.1").sha256
    (rig.tmp / "bed" / "node-0" / "shards" / layer1).unlink(missing_ok=True)
    blob = rig.tmp / "bc" / "registry" / "blobs" / f"{layer1}.esh"
    original = blob.read_bytes()
    tampered = bytearray(original)
    tampered[len(tampered) // 2] ^= 0x01
    blob.write_bytes(bytes(tampered))
    try:
        reply = rig.apply(rig.plan((2, 3)))
    finally:
        blob.write_bytes(original)
    assert not reply.committed and reply.epoch == old.epoch
    outcome = {n.node_id: (n.state, n.code) for n in reply.nodes}
    assert outcome == {"node-0": ("failed", "DATA_LOSS"), "node-1": ("aborted", ""),
                       "node-2": ("aborted", "")}, reply
    assert rig.node_view() == before  # nothing prepared anywhere, old segments kept
    assert rig.current() == old
    assert rig.tokens() == rig.reference
    # With the registry intact again, a newer epoch of the same plan commits.
    retry = rig.apply(rig.plan((2, 3)))
    assert retry.committed, retry
    assert rig.tokens() == rig.reference  # any cut gives the same greedy tokens


def test_duplicate_apply_is_harmless(rig: Rig) -> None:
    plan = rig.committed()
    before = rig.node_view()
    reply = rig.apply(plan)
    assert reply.duplicate and reply.committed and reply.epoch == plan.epoch
    assert rig.node_view() == before


def _prepare(rig: Rig, node: str, envelope: na.SignedEnvelope) -> grpc.StatusCode:
    with rig.bed.agent(node, tb.ROLLOUT) as agent, pytest.raises(grpc.RpcError) as err:
        agent.Prepare(na.PrepareRequest(assignment=envelope), timeout=30)
    return err.value.code()  # type: ignore[no-any-return]


def test_injected_assignments_are_rejected_and_change_nothing(rig: Rig) -> None:
    cur = rig.committed()
    before = rig.node_view()
    fresh = rig.plan((2, 3), epoch=cur.epoch + 100)  # would be accepted if it were genuine
    genuine = rig.bed.signed_assignments(fresh)
    # Forged: signed by a key the nodes do not trust.
    forged = na.SignedEnvelope(payload=genuine["node-0"].payload)
    forged.signature, forged.key_id = sign_envelope(forged.payload, generate_signing_key())
    assert _prepare(rig, "node-0", forged) == grpc.StatusCode.PERMISSION_DENIED
    # Forged: the trusted key id and signature over another payload.
    altered = na.SignedEnvelope(payload=genuine["node-0"].payload + b"\x00",
                                signature=genuine["node-0"].signature,
                                key_id=genuine["node-0"].key_id)
    assert _prepare(rig, "node-0", altered) == grpc.StatusCode.UNAUTHENTICATED
    # Foreign: node-1's genuine assignment delivered to node-0.
    assert _prepare(rig, "node-0", genuine["node-1"]) == grpc.StatusCode.FAILED_PRECONDITION
    # Stale: a genuine assignment for the epoch already committed (a replay).
    stale = rig.bed.signed_assignments(rig.plan((2, 3), epoch=cur.epoch))
    assert _prepare(rig, "node-0", stale["node-0"]) == grpc.StatusCode.FAILED_PRECONDITION
    # Expired: genuine, newer, but past its expiry.
    expired = rig.bed.signed_assignments(fresh, ttl_s=-1.0)
    assert _prepare(rig, "node-0", expired["node-0"]) == grpc.StatusCode.FAILED_PRECONDITION
    assert rig.node_view() == before
    assert rig.tokens() == rig.reference


def test_reapply_with_cached_shards_is_quick(rig: Rig) -> None:
    rig.committed()
    # Six layouts (three cut pairs x two orders of the non-entry nodes). The
    # first round fetches whatever a node lacks; in the second every shard is
    # cached on disk, while most segments are not loaded (a node keeps only
    # its last three epochs' runners), so Prepare builds them from the cache.
    layouts = [(order, cuts) for order in (NODES, ("node-0", "node-2", "node-1"))
               for cuts in ((1, 2), (1, 3), (2, 3))]
    times: list[float] = []
    server: list[float] = []
    for round_ in range(2):
        for order, cuts in layouts:
            plan = rig.plan(cuts)
            plan = plan_from_cuts(order, cuts, LAYERS, plan.model_digest, plan.epoch)
            start = time.perf_counter()
            reply = rig.apply(plan)
            elapsed = time.perf_counter() - start
            assert reply.committed, reply
            if round_ == 1:
                assert all(n.shards_fetched == 0 for n in reply.nodes), reply
                times.append(elapsed)
                server.append(reply.elapsed_s)
    # Printed, not asserted: CI machines vary (scenario target: median <= 1000 ms).
    print(f"\nre-apply with cached shards over {len(times)} rollouts: median "
          f"{statistics.median(times) * 1000:.1f} ms at the client "
          f"({statistics.median(server) * 1000:.1f} ms in the broadcaster), "
          f"max {max(times) * 1000:.1f} ms")
    assert rig.tokens() == rig.reference


def test_registry_blobs_hold_no_plaintext(rig: Rig) -> None:
    manifest = rig.bed.manifest()
    for info in manifest.shards:
        plain = (Path(rig.bed.shard_dir) / info.file).read_bytes()
        blob = (rig.tmp / "bc" / "registry" / "blobs" / f"{info.sha256}.esh").read_bytes()
        assert hashlib.sha256(blob).hexdigest() != info.sha256
        assert plain[-256:] not in blob
