"""Per-session KV cache for one segment's layers.

It duck-types the one method transformers' attention calls on a cache
(``cache.update(k, v, layer_idx, ...)``), so the family's own decoder layers
can run unmodified. Unlike ``DynamicCache`` (a ``torch.cat`` per layer per
step, O(length) copying), keys/values go into preallocated buffers that grow by
doubling; a step writes ``T`` rows and attends over a view of the prefix.
Because writes land beyond ``length`` until the runner ``advance``s, a step
that fails half-way leaves the cache as it was.
"""

from __future__ import annotations

from typing import Any

import torch

# First allocation, in tokens; doubling from here keeps reallocations to
# log2(context / 128) per session.
_MIN_CAPACITY = 128


class SegmentKVCache:
    def __init__(self, first_layer: int, num_layers: int, max_length: int) -> None:
        self.first_layer = first_layer
        self.max_length = max_length
        self.length = 0  # committed tokens
        self._keys: list[torch.Tensor | None] = [None] * num_layers
        self._values: list[torch.Tensor | None] = [None] * num_layers

    def update(
        self,
        key_states: torch.Tensor,
        value_states: torch.Tensor,
        layer_idx: int,
        *args: Any,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        i = layer_idx - self.first_layer
        start = self.length
        end = start + key_states.shape[-2]
        keys = self._ensure(self._keys, i, key_states, end)
        values = self._ensure(self._values, i, value_states, end)
        keys[:, :, start:end] = key_states
        values[:, :, start:end] = value_states
        return keys[:, :, :end], values[:, :, :end]

    def _ensure(
        self, bufs: list[torch.Tensor | None], i: int, like: torch.Tensor, end: int
    ) -> torch.Tensor:
        buf = bufs[i]
        if buf is not None and end <= buf.shape[-2]:
            return buf
        old = 0 if buf is None else buf.shape[-2]
        cap = min(self.max_length, max(end, 2 * old, _MIN_CAPACITY))
        cap = max(cap, end)
        b, h, _, d = like.shape
        new = torch.empty((b, h, cap, d), dtype=like.dtype, device=like.device)
        if buf is not None and self.length:
            new[:, :, : self.length] = buf[:, :, : self.length]
        bufs[i] = new
        return new

    def advance(self, n: int) -> None:
        self.length += n

    def truncate(self, length: int) -> None:
        # Rows past ``length`` are simply overwritten by the next step.
        self.length = length

    def nbytes(self) -> int:
        """Bytes allocated (capacity, not just the committed prefix)."""
        return sum(t.nbytes for t in (*self._keys, *self._values) if t is not None)
