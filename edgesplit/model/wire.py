"""Hidden states to and from the bytes of a frame.

The payload is the tensor's raw little-endian bytes in the wire dtype;
shape and dtype name travel beside it (and are bound into the AEAD's associated
data by the security layer). bfloat16 halves the bytes per hop at a small
precision cost; float32 keeps the split bit-exact with the monolithic model.
"""

from __future__ import annotations

import sys
import warnings

import torch

from edgesplit.model.base import WIRE_DTYPES, WireTensor
from edgesplit.model.errors import BadFrameDtype, BadFrameShape

_TORCH_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}
# The payload is defined as little-endian; every platform we target is.
assert sys.byteorder == "little", "edgesplit frames assume a little-endian host"


def torch_dtype(name: str) -> torch.dtype:
    try:
        return _TORCH_DTYPES[name]
    except KeyError:
        raise BadFrameDtype(f"dtype {name!r} not in {sorted(WIRE_DTYPES)}") from None


def dtype_name(dtype: torch.dtype) -> str:
    for name, dt in _TORCH_DTYPES.items():
        if dt == dtype:
            return name
    raise BadFrameDtype(f"dtype {dtype} cannot go on the wire")


def to_wire(tensor: torch.Tensor, wire_dtype: str = "float32") -> WireTensor:
    """Serialise ``tensor`` (any device, any float dtype) as ``wire_dtype`` bytes."""
    dt = torch_dtype(wire_dtype)
    if not tensor.is_floating_point():
        raise BadFrameDtype(f"cannot send a {tensor.dtype} tensor as hidden state")
    flat = tensor.detach().to(device="cpu", dtype=dt).contiguous().reshape(-1)
    # A view of the tensor's bytes (numpy has no bfloat16, uint8 works for every
    # dtype): sealing reads it once, nothing copies it before.
    data = memoryview(flat.view(torch.uint8).numpy())
    return WireTensor(data=data, shape=tuple(int(d) for d in tensor.shape), dtype=wire_dtype)


def _shape_matches(shape: tuple[int, ...], expect: tuple[int | None, ...]) -> bool:
    return len(shape) == len(expect) and all(e is None or e == s for e, s in zip(expect, shape))


def from_wire(
    wire: WireTensor,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    expect_shape: tuple[int | None, ...] | None = None,
) -> torch.Tensor:
    """Rebuild the tensor; optionally cast to ``dtype``, move to ``device`` and check
    the shape against ``expect_shape`` (None entries match any size)."""
    if expect_shape is not None and not _shape_matches(wire.shape, expect_shape):
        raise BadFrameShape(f"frame shape {wire.shape}, expected {expect_shape}")
    dt = torch_dtype(wire.dtype)  # WireTensor validated the byte count already
    view = memoryview(wire.data)
    writable = not view.readonly
    with warnings.catch_warnings():
        # frombuffer warns on read-only bytes; such a tensor is copied before it is returned.
        warnings.simplefilter("ignore", UserWarning)
        raw = (
            torch.frombuffer(view, dtype=torch.uint8)
            if view.nbytes
            else torch.empty(0, dtype=torch.uint8)
        )
    t = raw.view(dt).reshape(wire.shape)
    on_cpu = device is None or torch.device(device).type == "cpu"
    if (dtype is None or dtype == dt) and on_cpu:
        # A frame's own (writable) payload becomes the tensor as it is; read-only
        # bytes belong to someone else and are copied.
        return t if writable else t.clone()
    return t.to(device=device, dtype=dtype)  # a copy already
