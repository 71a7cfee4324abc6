"""One packed forward for many sessions: ragged KV caches, per-row masks.

The steps of a batch are packed along the token axis, ``[1, sum(T_i), hidden]``
(vLLM's flat token batch): the projections and MLPs of every layer run once for
all of them, which is where batching pays (a matrix-matrix product reads the
weights once instead of once per session). Only attention is per session: each
row attends over its own cache with its own positions and mask.

transformers' decoder layers are used unmodified: :class:`PackedBatch` is the
``cache`` they call ``update`` on (it writes each row's keys/values into that
session's :class:`SegmentKVCache`), and :func:`packed_attention`, registered as
an attention implementation, runs the family's own sdpa path once per row.
With one row it makes exactly the call the plain sdpa path makes, so a batch
of one is bit-identical to a step run alone (docs/data-plane.md, batching).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from edgesplit.model.kvcache import SegmentKVCache

PACKED = "edgesplit_packed"  # the attention implementation's registered name


def causal_mask(start_pos: int, n: int, window: int | None,
                device: torch.device) -> torch.Tensor | None:
    """None whenever sdpa's own causal handling is exact (as transformers decides):
    a prefill from an empty cache (is_causal) or one new token, within the window.
    Otherwise a boolean [1, 1, T, start+T] mask, True where attention is allowed."""
    end = start_pos + n
    if (start_pos == 0 or n == 1) and (window is None or end <= window):
        return None
    q = torch.arange(start_pos, end, device=device)[:, None]
    k = torch.arange(end, device=device)[None, :]
    allowed = k <= q
    if window is not None:
        allowed &= q - k < window
    return allowed[None, None]


class PackedBatch:
    """The cache object the layers see for one packed step of several sessions."""

    def __init__(self, caches: Sequence[SegmentKVCache], starts: Sequence[int],
                 lengths: Sequence[int], windows: dict[int, int | None],
                 device: torch.device) -> None:
        self.caches, self.starts, self.lengths = caches, starts, lengths
        self.offsets = [0]
        for n in lengths:
            self.offsets.append(self.offsets[-1] + n)
        self._windows = windows  # layer index -> sliding window (None: full)
        self._device = device
        self._masks: dict[tuple[int, int | None], torch.Tensor | None] = {}
        self._kv: list[tuple[torch.Tensor, torch.Tensor]] = []  # this layer's, per row

    def positions(self) -> torch.Tensor:
        """Position ids of the packed tokens, ``[1, sum(T_i)]``."""
        if len(self.starts) == 1:
            s = self.starts[0]
            return torch.arange(s, s + self.lengths[0], device=self._device).unsqueeze(0)
        return torch.cat([torch.arange(s, s + n, device=self._device)
                          for s, n in zip(self.starts, self.lengths, strict=True)]).unsqueeze(0)

    def mask(self, row: int, layer_idx: int) -> torch.Tensor | None:
        window = self._windows[layer_idx]
        key = (row, window)
        if key not in self._masks:
            self._masks[key] = causal_mask(self.starts[row], self.lengths[row], window,
                                           self._device)
        return self._masks[key]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int,
               *args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if len(self.caches) == 1:
            kv = self.caches[0].update(key_states, value_states, layer_idx)
            self._kv = [kv]
            return kv
        o = self.offsets
        self._kv = [cache.update(key_states[:, :, o[i]:o[i + 1]],
                                 value_states[:, :, o[i]:o[i + 1]], layer_idx)
                    for i, cache in enumerate(self.caches)]
        return key_states, value_states  # unused: packed_attention reads self._kv

    def attend(self, module: Any, query: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """Each row's attention over its own cache, packed back along the tokens."""
        layer = module.layer_idx
        if len(self.caches) == 1:
            keys, values = self._kv[0]
            out, _ = sdpa_attention_forward(module, query, keys, values, self.mask(0, layer),
                                            **kwargs)
            return out
        o = self.offsets
        outs = [sdpa_attention_forward(module, query[:, :, o[i]:o[i + 1]], keys, values,
                                       self.mask(i, layer), **kwargs)[0]
                for i, (keys, values) in enumerate(self._kv)]
        return torch.cat(outs, dim=1)


def packed_attention(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     attention_mask: torch.Tensor | None, **kwargs: Any
                     ) -> tuple[torch.Tensor, None]:
    """The registered attention: per-row over a :class:`PackedBatch`, plain sdpa
    for any other caller (a full model built from the same config)."""
    batch = kwargs.pop("packed", None)
    if batch is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    return batch.attend(module, query, **kwargs), None


def register() -> None:
    """Make :data:`PACKED` an attention implementation (once; the first runner
    does it, so importing this module does not import transformers' models)."""
    global sdpa_attention_forward
    if sdpa_attention_forward is None:
        from transformers import AttentionInterface
        from transformers.integrations import sdpa_attention

        sdpa_attention_forward = sdpa_attention.sdpa_attention_forward
        AttentionInterface.register(PACKED, packed_attention)


sdpa_attention_forward: Any = None  # transformers' own sdpa path, bound by register()


def join(xs: Sequence[torch.Tensor]) -> torch.Tensor:
    """The rows packed as ``[1, sum(T_i), hidden]``: a view when they already lie
    back to back in one buffer (the rows of the frame or batch they came from),
    else one copy."""
    if len(xs) == 1:
        return xs[0]
    first, hidden = xs[0], xs[0].shape[2]
    end, n = first.data_ptr(), 0
    for x in xs:
        if not x.is_contiguous() or x.data_ptr() != end or x.dtype != first.dtype:
            break
        end += x.numel() * x.element_size()
        n += x.shape[1]
    else:  # one run of memory: the rows as one view over it
        return first.as_strided((1, n, hidden), (n * hidden, hidden, 1))
    return torch.cat(list(xs), dim=1)


def split(x: torch.Tensor, lengths: Sequence[int]) -> list[torch.Tensor]:
    """Views of the packed rows (no copy)."""
    if len(lengths) == 1:
        return [x]
    return list(torch.split(x, list(lengths), dim=1))
