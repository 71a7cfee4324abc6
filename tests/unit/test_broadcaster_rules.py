"""The broadcaster's pure rules: epoch admission, fetch grants, wrapped shard
keys in assignments, the model-files bundle (retries: tests/service/test_transport.py)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from edgesplit.core.types import Plan
from edgesplit.model import bundle
from edgesplit.model.errors import ModelFileError
from edgesplit.rpc.assignments import PeerInfo, ShardEntry, build_assignments, shard_key_context
from edgesplit.rpc.errors import InvalidRequest, Precondition
from edgesplit.security.errors import KeyUnwrapError
from edgesplit.security.keys import generate_agreement_key, public_bytes
from edgesplit.security.shards import unwrap_key, wrap_key
from edgesplit.testbed import plan_from_cuts
from services.broadcaster.inventory import InventoryFile, check_plan_nodes, trusted_for
from services.broadcaster.registry import ModelEntry
from services.broadcaster.rollout import Verdict, admit, grants_of, leaky_routes
from services.monitor.loaders import ConfigFileError, load_control_inventory

NAMES = ["meta", "embed", "layer.0", "layer.1", "layer.2", "layer.3", "head"]
SHARDS = {n: ShardEntry(n, f"{i:064x}", 100 + i) for i, n in enumerate(NAMES)}
MODEL = ModelEntry("m" * 64, 4, SHARDS)


def plan(epoch: int, cuts: tuple[int, int] = (1, 3)) -> Plan:
    return plan_from_cuts(["n0", "n1", "n2"], cuts, 4, MODEL.digest, epoch)


def test_admit_epochs_are_used_once() -> None:
    assert admit(plan(1), None, 0, 10) is Verdict.NEW
    assert admit(plan(3), plan(2), 2, 10) is Verdict.NEW
    assert admit(plan(2), plan(2), 2, 10) is Verdict.DUPLICATE
    with pytest.raises(Precondition):
        admit(plan(2, (2, 3)), plan(2), 2, 10)  # same epoch, another plan
    with pytest.raises(Precondition):
        admit(plan(1), plan(2), 2, 10)  # older
    with pytest.raises(Precondition):
        admit(plan(3), plan(2), 3, 10)  # tried and aborted


def test_admit_bounds_the_epoch_step() -> None:
    assert admit(plan(12), plan(2), 2, 10) is Verdict.NEW  # exactly the step
    with pytest.raises(InvalidRequest):
        admit(plan(13), plan(2), 2, 10)
    with pytest.raises(InvalidRequest):
        admit(plan(2**63), None, 0, 1000)


def test_grants_are_each_nodes_own_shards_plus_meta() -> None:
    g = grants_of(plan(1), MODEL)
    sha = {n: s.sha256 for n, s in SHARDS.items()}
    assert g["n0"] == {sha["meta"], sha["embed"], sha["layer.0"], sha["head"]}
    assert g["n1"] == {sha["meta"], sha["layer.1"], sha["layer.2"]}
    assert g["n2"] == {sha["meta"], sha["layer.3"]}


def test_assignments_carry_keys_only_their_node_can_unwrap() -> None:
    keys = {f"n{i}": generate_agreement_key() for i in range(3)}
    peers = {n: PeerInfo(n, f"h{n}:1", public_bytes(k)) for n, k in keys.items()}
    shard_keys = {s.sha256: bytes([i]) * 32 for i, s in enumerate(SHARDS.values())}

    def wrap(node: str, s: ShardEntry) -> bytes:
        return wrap_key(shard_keys[s.sha256], keys[node].public_key(),
                        shard_key_context(node, s.sha256))

    out = build_assignments(plan(1), SHARDS, peers, 4, 10**13, common_shards=["meta"],
                            wrap=wrap)
    assert [r.name for r in out["n1"].shards] == ["meta", "layer.1", "layer.2"]
    for node, a in out.items():
        for ref in a.shards:
            ctx = shard_key_context(node, ref.sha256)
            assert unwrap_key(ref.wrapped_key, keys[node], ctx) == shard_keys[ref.sha256]
            other = "n1" if node != "n1" else "n2"
            with pytest.raises(KeyUnwrapError):
                unwrap_key(ref.wrapped_key, keys[other], shard_key_context(other, ref.sha256))
            with pytest.raises(KeyUnwrapError):  # bound to the shard too
                unwrap_key(ref.wrapped_key, keys[node], shard_key_context(node, "f" * 64))


def test_bundle_is_canonical_and_safe(tmp_path: Path) -> None:
    files = {"config.json": b'{"model_type": "qwen3"}', "tokenizer.json": b"{}"}
    assert bundle.pack(files) == bundle.pack(dict(reversed(list(files.items()))))
    assert bundle.unpack(bundle.pack(files)) == files
    out = bundle.write_dir(files, tmp_path / "x.d")
    assert {p.name for p in out.iterdir()} == set(files)
    for bad in ({"../evil": b""}, {".hidden": b""}, {"a/b": b""}):
        with pytest.raises(ModelFileError):
            bundle.pack({**files, **bad})
    forged = bundle.pack(files).replace(b'"tokenizer.json"', b'"../tokenizer"')
    with pytest.raises(ModelFileError):
        bundle.unpack(forged)
    with pytest.raises(ModelFileError):
        bundle.unpack(bundle.pack({"tokenizer.json": b"{}"}))  # no config.json
    with pytest.raises(ModelFileError):
        bundle.unpack(b"not json")


def test_leaky_routes_are_what_the_entries_will_refuse() -> None:
    p = plan(1)  # n0 [0,1) +embed, n1 [1,3), n2 [3,4), n0 [4,4) +head
    assert leaky_routes(p, ["n0"], privacy_depth=1) == {}
    assert leaky_routes(p, ["n0"], privacy_depth=2) == {"n0": ("n1",)}  # layer 1 on n1
    assert leaky_routes(p, ["n0", "n1"], privacy_depth=2) == {}
    # the entry is checked too: an entry not on the list cannot serve privacy=high
    assert leaky_routes(p, [], privacy_depth=0) == {"n0": ("n0",)}


INVENTORY = """
privacy_depth: 2
nodes:
  - {id: n0, trust: trusted, flops_per_s: 1.0e9, address: "h0:1", agreement_public_key: KEY0}
  - {id: n1, trust: trusted, trusted_by: [n0], flops_per_s: 1.0e9, address: "h1:1"}
  - {id: n2, trust: untrusted, flops_per_s: 1.0e9, address: "h2:1", agreement_public_key: KEY0}
  - {id: n3, trust: trusted, trusted_by: [n2], flops_per_s: 1.0e9}
"""


def _key() -> str:
    return base64.b64encode(public_bytes(generate_agreement_key())).decode()


def test_the_control_inventory_binds_keys_and_trust(tmp_path: Path) -> None:
    key = _key()
    path = tmp_path / "inv.yaml"
    path.write_text(INVENTORY.replace("KEY0", key))
    inv = load_control_inventory(path)
    assert inv.privacy_depth == 2
    assert dict(inv.agreement_keys) == {"n0": base64.b64decode(key), "n2": base64.b64decode(key)}
    ok = plan_from_cuts(["n0", "n2"], [2], 4, MODEL.digest, 1)
    # n0: no trusted_by, so any entry's; n1 only n0's; n2 untrusted; n3 only n2's
    assert trusted_for(ok, inv) == ("n0", "n1")
    n2_entry = plan_from_cuts(["n2", "n0"], [2], 4, MODEL.digest, 1)
    assert trusted_for(n2_entry, inv) == ("n0", "n3")
    check_plan_nodes(ok, inv)
    with pytest.raises(Precondition, match="n1"):  # listed, but no key enrolled
        check_plan_nodes(plan_from_cuts(["n0", "n1"], [2], 4, MODEL.digest, 1), inv)
    with pytest.raises(InvalidRequest, match="n9"):
        check_plan_nodes(plan_from_cuts(["n0", "n9"], [2], 4, MODEL.digest, 1), inv)


@pytest.mark.parametrize(("bad", "match"), [
    ("agreement_public_key: '!!notbase64'", "not base64"),
    (f"agreement_public_key: {base64.b64encode(b'short').decode()}", "32 bytes"),
])
def test_a_bad_enrolled_key_names_the_file_and_node(tmp_path: Path, bad: str, match: str) -> None:
    path = tmp_path / "inv.yaml"
    path.write_text(f"nodes:\n  - {{id: n0, flops_per_s: 1.0e9, {bad}}}\n")
    with pytest.raises(ConfigFileError, match=rf"inv.yaml: nodes\[0\]: .*{match}"):
        load_control_inventory(path)


@pytest.mark.parametrize("depth", ["-1", "two", "true"])
def test_a_bad_privacy_depth_is_refused(tmp_path: Path, depth: str) -> None:
    path = tmp_path / "inv.yaml"
    path.write_text(f"privacy_depth: {depth}\nnodes: []\n")
    with pytest.raises(ConfigFileError, match="privacy_depth"):
        load_control_inventory(path)


def test_the_inventory_file_is_reread_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "inv.yaml"
    source = InventoryFile(path)  # not there yet: nothing known, nothing refused at start
    assert len(source.current().nodes) == 0
    path.write_text(INVENTORY.replace("KEY0", _key()))
    assert source.current().nodes.ids == ("n0", "n1", "n2", "n3")
    path.write_text("nodes: 7\n")  # an edit that breaks it: refused, not half-used
    with pytest.raises(Precondition, match="inventory unusable"):
        source.current()


def test_replicas_of_one_entry_get_their_own_route_keys_and_shared_shards_once() -> None:
    from edgesplit.core.route import route_from_cuts
    from edgesplit.core.types import Epoch, NodeId

    n0, n1, n2 = NodeId("n0"), NodeId("n1"), NodeId("n2")
    both = Plan(Epoch(1), MODEL.digest, (route_from_cuts(n0, [n0, n1], [1], 4),
                                         route_from_cuts(n0, [n0, n2], [1], 4, replica=1)))
    peers = {n: PeerInfo(n, f"h{n}:1", public_bytes(generate_agreement_key()))
             for n in ("n0", "n1", "n2")}
    out = build_assignments(both, SHARDS, peers, 4, 10**13, common_shards=["meta"])
    # The entry runs hop 0 and the head of both routes, each under its route key;
    # the layer it holds for both is one shard.
    assert sorted((s.entry, s.hop) for s in out["n0"].segments) == [
        ("n0", 0), ("n0", 2), ("n0#1", 0), ("n0#1", 2)]
    assert [r.name for r in out["n0"].shards].count("layer.0") == 1
    assert [(s.entry, s.hop) for s in out["n2"].segments] == [("n0#1", 1)]
    assert {p.node_id for p in out["n0"].peers} == {"n1", "n2"}
    twice = Plan(Epoch(1), MODEL.digest, (both.routes[0], both.routes[0]))
    with pytest.raises(InvalidRequest, match="one key"):
        build_assignments(twice, SHARDS, peers, 4, 10**13)
    assert grants_of(both, MODEL)["n2"] == {SHARDS["meta"].sha256, SHARDS["layer.1"].sha256,
                                            SHARDS["layer.2"].sha256, SHARDS["layer.3"].sha256}
