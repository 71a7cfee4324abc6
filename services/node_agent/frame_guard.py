"""Checks on link messages that neither the AEAD nor the assignment make.

* **Who sends.** With mTLS the caller's certificate names a node; every
  message on its link stream must name that node as its sender (a frame's
  ``src``, a failure's ``reporter``), and an EndSession must come from a peer
  of the epoch it names. Otherwise PERMISSION_DENIED, counted by kind. A
  Hello must name the certificate's node too.
* **What it carries.** An activation with a NaN or an infinity is refused
  (INVALID_ARGUMENT, ``non_finite``) before any layer runs on it: one bad hop
  would otherwise poison every KV cache after it. The check reads the raw
  wire bytes (no torch, no numpy): a float is non-finite exactly when its
  exponent bits are all ones, and the byte holding most of them is picked out
  of the buffer with one strided slice and one ``bytes.translate`` at C
  speed; only the (normally zero) candidates are looked at one by one.

(docs/architecture.md §12)
"""

from __future__ import annotations

from typing import Final

import grpc

from edgesplit.model.base import WireTensor
from edgesplit.rpc.authz import Identity, Role
from edgesplit.security.errors import FrameRejected, SecurityError
from edgesplit.v1 import node_agent_pb2 as na
from services.node_agent import metrics as m
from services.node_agent.epochs import EpochBook


class WrongSource(SecurityError):
    """A message names another sender than the caller's certificate."""


def caller_node(identity: Identity | None) -> str | None:
    """The node id a link stream's messages must name (None without mTLS)."""
    if identity is None:
        return None
    return identity.name if identity.role == Role.NODE else ""


def check_hello(hello: na.LinkHello, identity: Identity | None) -> None:
    node = caller_node(identity)
    if not hello.node_id or (node is not None and hello.node_id != node):
        m.WRONG_SOURCE.labels("hello").inc()
        raise WrongSource(f"hello names {hello.node_id!r}, the certificate {node!r}")


def refuse_source(msg: na.LinkMessage, peer: str | None, book: EpochBook | None = None
                  ) -> na.LinkAck | None:
    """The refusal of a message not from ``peer`` (None: it may go on)."""
    if peer is None:
        return None
    kind = msg.WhichOneof("kind")
    if kind == "frame":
        named = msg.frame.header.src
    elif kind == "batch_frame":  # every header names the same src (BatchHeader checks)
        named = msg.batch_frame.headers[0].src if msg.batch_frame.headers else peer
    elif kind == "step_failure":
        named = msg.step_failure.reporter
    elif kind == "end_session" and book is not None:
        es = book.get(msg.end_session.epoch)
        named = peer if es is not None and peer in es.peers else ""
    else:
        return None
    if named == peer:
        return None
    m.WRONG_SOURCE.labels(kind).inc()
    return na.LinkAck(seq=msg.seq, code=grpc.StatusCode.PERMISSION_DENIED.value[0],
                      detail=f"{kind} names {named!r}; the caller's certificate is {peer!r}")


# Per wire dtype: (bytes per element, offset of the byte with the top exponent
# bits, its candidate byte values, the next byte's bit completing the exponent).
_LAYOUT: Final[dict[str, tuple[int, int, bytes, int]]] = {
    "float32": (4, 3, bytes([0x7F, 0xFF]), 0x80),
    "bfloat16": (2, 1, bytes([0x7F, 0xFF]), 0x80),
    "float16": (2, 1, bytes(b for b in range(256) if b & 0x7C == 0x7C), 0),
}
_KEEP_ONLY: Final[dict[str, bytes]] = {
    dtype: bytes(b for b in range(256) if b not in cand) for dtype, (_, _, cand, _) in
    _LAYOUT.items()}


def non_finite(wire: WireTensor) -> int:
    """How many elements of ``wire`` are NaN or infinite (little-endian floats)."""
    size, hi, candidates, low_bit = _LAYOUT[wire.dtype]
    data = wire.data
    if not isinstance(data, (bytes, bytearray)):
        data = bytes(data)  # a strided slice of a memoryview is slow: copy once, then slice
    tops = data[hi::size]
    if not tops.translate(None, _KEEP_ONLY[wire.dtype]):
        return 0  # the fast path: no element has its top exponent bits all set
    count = 0
    for i, top in enumerate(tops):
        if top in candidates and (not low_bit or data[i * size + hi - 1] & low_bit):
            count += 1
    return count


def check_finite(wire: WireTensor) -> None:
    bad = non_finite(wire)
    if bad:
        raise FrameRejected("non_finite", f"{bad} NaN or infinite values in the activation")
