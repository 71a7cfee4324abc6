"""FrameHeader: validation and canonical (injective, deterministic) encoding."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgesplit.security.errors import FrameRejected
from edgesplit.security.header import FrameHeader

HDR = FrameHeader("sess-1", 3, 1, 7, "node-a", "node-b", (1, 1, 64), "float16")


@pytest.mark.parametrize(
    "changes",
    [
        {"session_id": ""},
        {"src": "x" * 256},
        {"step": -1},
        {"epoch": 1 << 64},
        {"chunk": 2, "chunks": 2},
        {"chunks": 0},
        {"shape": (-1, 4)},
        {"shape": (1,) * 9},
    ],
)
def test_malformed_headers_are_bad_header(changes: dict[str, Any]) -> None:
    with pytest.raises(FrameRejected) as exc:
        dataclasses.replace(HDR, **changes)
    assert exc.value.reason == "bad_header"


_text = st.text(min_size=1, max_size=12)
_u64 = st.integers(min_value=0, max_value=(1 << 64) - 1)
headers = st.builds(
    lambda sess, step, hop, epoch, src, dst, shape, dtype, chunks, extra, entry, pos: FrameHeader(
        sess, step, hop, epoch, src, dst, tuple(shape), dtype, chunks - 1, chunks + extra,
        entry, pos
    ),
    _text,
    _u64,
    _u64,
    _u64,
    _text,
    _text,
    st.lists(_u64, max_size=4),
    _text,
    st.integers(min_value=1, max_value=100),
    st.integers(min_value=0, max_value=3),
    st.text(max_size=12),
    _u64,
)


@settings(max_examples=300, deadline=None)
@given(h1=headers, h2=headers)
def test_header_encoding_is_injective(h1: FrameHeader, h2: FrameHeader) -> None:
    assert (h1.encode() == h2.encode()) == (h1 == h2)


def test_header_encoding_is_deterministic_and_not_field_ambiguous() -> None:
    assert HDR.encode() == dataclasses.replace(HDR).encode()
    x = dataclasses.replace(HDR, session_id="ab", src="c")
    y = dataclasses.replace(HDR, session_id="a", src="bc")
    assert x.encode() != y.encode()


def test_the_wire_header_is_the_same_header_by_field_name() -> None:
    from edgesplit.security.header import FIELDS
    from edgesplit.v1 import node_agent_pb2 as na

    assert tuple(f.name for f in na.FrameHeader.DESCRIPTOR.fields) == FIELDS
    assert FrameHeader.from_proto(na.FrameHeader(**HDR.as_dict())) == HDR
