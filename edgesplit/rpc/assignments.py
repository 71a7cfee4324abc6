"""Plan -> per-node signed assignments (used by the broadcaster and the test bed).

A node's assignment names each segment it runs (per route), its place in the
ring (previous and next node), the shards it needs with their digests, and
the peers it talks to with their X25519 keys.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf.timestamp_pb2 import Timestamp

from edgesplit.core.route import RouteError, check_route
from edgesplit.core.types import NodeId, Plan, Route, Segment, shard_name
from edgesplit.rpc.convert import plan_to_proto, segment_to_proto, wire_dtype_to_proto
from edgesplit.rpc.errors import InvalidRequest
from edgesplit.security.signing import DECISION_DOMAIN, payload_digest, sign_envelope
from edgesplit.v1 import node_agent_pb2 as na


@dataclass(frozen=True)
class PeerInfo:
    """How to reach a node and derive frame keys with it."""

    node_id: str
    address: str
    x25519_public: bytes


@dataclass(frozen=True)
class ShardEntry:
    """One shard of the model as a node must verify it."""

    name: str
    sha256: str
    size_bytes: int


# (node id, shard) -> the shard's key wrapped to that node's X25519 key.
ShardKeyWrapper = Callable[[str, ShardEntry], bytes]
_SHARD_KEY_DOMAIN = b"edgesplit.v1.shard-key\0"


def shard_key_context(node_id: str, sha256: str) -> bytes:
    """What a wrapped shard key is bound to (``wrap_key``'s context): the
    recipient and the shard's plaintext digest, so a key wrapped for one node
    or one shard does not open as another's."""
    return _SHARD_KEY_DOMAIN + node_id.encode() + b"\0" + sha256.encode()


def segment_parts(seg: Segment) -> list[str]:
    """Shard names ``seg`` needs, in execution order (embed, layers, head)."""
    return [shard_name(k) for k in seg.keys]


def validate_route(route: Route, num_layers: int) -> None:
    """``core.route.check_route`` at the RPC boundary: a bad route is bad input."""
    try:
        check_route(route, num_layers)
    except RouteError as exc:
        raise InvalidRequest(str(exc)) from exc


def build_assignments(plan: Plan, shards: Mapping[str, ShardEntry],
                      peers: Mapping[str, PeerInfo], num_layers: int, expires_at_ms: int,
                      wire_dtype: str = "float32", trusted_nodes: Sequence[str] = (),
                      privacy_depth: int = 1, *, common_shards: Sequence[str] = (),
                      wrap: ShardKeyWrapper | None = None) -> dict[str, na.Assignment]:
    """One unsigned Assignment per node the plan uses.

    ``common_shards`` go to every node (the registry's ``meta`` shard);
    ``wrap``, when given, fills each ShardRef's ``wrapped_key`` so the node can
    fetch and decrypt the shard from the registry.
    """
    plan_pb = plan_to_proto(plan)
    dtype = wire_dtype_to_proto(wire_dtype)
    expires = Timestamp()
    expires.FromMilliseconds(expires_at_ms)
    out: dict[str, na.Assignment] = {}
    for route in plan.routes:
        validate_route(route, num_layers)
    keys = [r.key for r in plan.routes]
    if len(set(keys)) != len(keys):
        raise InvalidRequest("plan has two routes with one key (entry and replica)")
    for node in sorted(plan.nodes):
        if node not in peers:
            raise InvalidRequest(f"no address/key known for node {node!r}")
        a = na.Assignment(node_id=node, epoch=plan.epoch, expires_at=expires,
                          model_digest=plan.model_digest, plan=plan_pb, wire_dtype=dtype,
                          trusted_nodes=list(trusted_nodes), privacy_depth=privacy_depth)
        parts: set[str] = set(common_shards)
        talks_to: set[NodeId] = set()
        for route in plan.routes:
            segs = route.segments
            for hop, seg in enumerate(segs):
                if seg.node != node:
                    continue
                prev_node = segs[hop - 1].node if hop > 0 else NodeId("")
                next_node = segs[hop + 1].node if hop + 1 < len(segs) else route.entry
                a.segments.append(na.RouteSegment(
                    entry=route.key, segment=segment_to_proto(seg), hop=hop,
                    prev_node=prev_node, next_node=next_node))
                parts.update(segment_parts(seg))
                talks_to.update(n for n in (prev_node, next_node) if n and n != node)
            if node == route.entry:
                talks_to.add(segs[-1].node)  # the ring returns here
                talks_to.discard(node)
        for name in sorted(parts, key=_part_order):
            if name not in shards:
                raise InvalidRequest(f"shard {name!r} not in the manifest")
            s = shards[name]
            a.shards.append(na.ShardRef(name=s.name, sha256=s.sha256, size_bytes=s.size_bytes,
                                        wrapped_key=wrap(node, s) if wrap else b""))
        for peer in sorted(talks_to):
            info = peers[peer]
            a.peers.append(na.Peer(node_id=peer, address=info.address,
                                   x25519_public=info.x25519_public))
        out[node] = a
    return out


def _part_order(name: str) -> tuple[int, int]:
    if name == "meta":
        return (-1, 0)
    if name == "embed":
        return (0, 0)
    if name == "head":
        return (2, 0)
    return (1, int(name.split(".", 1)[1]))


def sign_assignment(assignment: na.Assignment, key: Ed25519PrivateKey) -> na.SignedEnvelope:
    payload = assignment.SerializeToString(deterministic=True)
    signature, key_id = sign_envelope(payload, key)
    return na.SignedEnvelope(payload=payload, signature=signature, key_id=key_id)


def sign_decision(node_id: str, epoch: int, assignment_digest: bytes, action: int,
                  key: Ed25519PrivateKey, expires_at_ms: int) -> na.SignedEnvelope:
    """A signed RolloutDecision: Commit or Abort of one node's assignment
    (``assignment_digest``: ``payload_digest`` of its envelope's payload)."""
    payload = na.RolloutDecision(node_id=node_id, epoch=epoch,
                                 assignment_digest=assignment_digest, action=action,
                                 expires_at_ms=expires_at_ms).SerializeToString(
                                     deterministic=True)
    signature, key_id = sign_envelope(payload, key, domain=DECISION_DOMAIN)
    return na.SignedEnvelope(payload=payload, signature=signature, key_id=key_id)


def commit_request(envelope: na.SignedEnvelope, key: Ed25519PrivateKey,
                   ttl_s: float = 600.0) -> na.CommitRequest:
    """The signed Commit of the assignment in ``envelope`` (test bed, tests)."""
    a = na.Assignment.FromString(envelope.payload)
    expires = int((time.time() + ttl_s) * 1000)
    return na.CommitRequest(epoch=a.epoch, decision=sign_decision(
        a.node_id, a.epoch, payload_digest(envelope.payload), na.ROLLOUT_ACTION_COMMIT, key,
        expires))


def abort_request(node_id: str, epoch: int, key: Ed25519PrivateKey,
                  envelope: na.SignedEnvelope | None = None,
                  ttl_s: float = 600.0) -> na.AbortRequest:
    """The signed Abort of ``epoch`` on ``node_id`` (of ``envelope``'s assignment if given)."""
    digest = payload_digest(envelope.payload) if envelope is not None else b""
    expires = int((time.time() + ttl_s) * 1000)
    return na.AbortRequest(epoch=epoch, decision=sign_decision(
        node_id, epoch, digest, na.ROLLOUT_ACTION_ABORT, key, expires))
