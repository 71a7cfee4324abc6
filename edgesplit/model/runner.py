"""``TorchSegmentRunner``: a contiguous range of decoder layers, with its KV caches.

It instantiates only its own decoder layers (plus the rotary table, and the
embedding / final norm + lm_head when it holds them) from the family's
transformers classes, on the meta device, then assigns the weights it reads for
exactly those parts; nothing else of the model is ever allocated or read.
The layers are the library's own, so numerics match ``model.generate``.
"""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from edgesplit.model import batch, wire
from edgesplit.model.base import SamplingParams, SegmentSpec, SessionTable, WireTensor
from edgesplit.model.errors import (
    BadFrame,
    BadFrameDtype,
    BadFrameShape,
    BadTokens,
    ModelFileError,
    NotServed,
    UnsupportedModel,
)
from edgesplit.model.kvcache import SegmentKVCache
from edgesplit.model.sampling import Sampler

_CLASS_PREFIX = {"llama": "Llama", "qwen2": "Qwen2", "qwen3": "Qwen3", "mistral": "Mistral"}


class WeightSource(Protocol):
    """Where a runner gets its weights: a HF model dir or a shard dir."""

    config: dict[str, Any]

    def read_part(self, part: str) -> dict[str, torch.Tensor]: ...


def open_source(
    path: str | Path, expected_digests: Mapping[str, str] | None = None
) -> WeightSource:
    """A shard directory (has ``manifest.json``) or a plain HF model directory."""
    from edgesplit.model.loader import ModelDir
    from edgesplit.model.shard import MANIFEST, ShardDir

    if (Path(path) / MANIFEST).is_file():
        return ShardDir(path, expected_digests)
    if expected_digests:
        raise ModelFileError(f"{path}: digests given but it is not a shard directory")
    return ModelDir(path)


def hf_config(config: Mapping[str, Any]) -> Any:
    """The transformers config object for a config.json dict, set up for sdpa."""
    from transformers import CONFIG_MAPPING

    family = config.get("model_type")
    if family not in _CLASS_PREFIX:
        raise UnsupportedModel(f"model_type {family!r} not supported")
    cfg = CONFIG_MAPPING[family].from_dict(dict(config))
    # sdpa: fused kernel, and no mask needed for prefill-from-empty (is_causal)
    # or single-token decode, exactly as transformers itself runs these models.
    cfg._attn_implementation = "sdpa"
    return cfg


def _family_classes(family: str) -> tuple[type[nn.Module], type[nn.Module], type[nn.Module]]:
    prefix = _CLASS_PREFIX[family]
    mod = importlib.import_module(f"transformers.models.{family}.modeling_{family}")
    return (
        getattr(mod, f"{prefix}DecoderLayer"),
        getattr(mod, f"{prefix}RMSNorm"),
        getattr(mod, f"{prefix}RotaryEmbedding"),
    )


def _resolve_dtype(
    dtype: str | None, config: Mapping[str, Any], device: torch.device
) -> torch.dtype:
    if dtype is None:  # CPU kernels are fastest and exact in float32; GPUs use the checkpoint's
        dtype = "float32" if device.type == "cpu" else "auto"
    if dtype == "auto":
        dtype = str(config.get("dtype") or config.get("torch_dtype") or "float32")
    if dtype not in ("float32", "bfloat16", "float16"):
        raise UnsupportedModel(f"dtype {dtype!r} not supported")
    return wire.torch_dtype(dtype)


def _window_of(cfg: Any, family: str, layer: int) -> int | None:
    """Sliding-window size of a layer, None for full attention."""
    window = getattr(cfg, "sliding_window", None)
    if window is None:
        return None
    types = getattr(cfg, "layer_types", None)
    if family == "mistral" or types is None:
        return int(window)
    return int(window) if types[layer] == "sliding_attention" else None


class TorchSegmentRunner:
    """Runs layers ``[start, end)`` (+ embed / head) of one model for many sessions."""

    def __init__(
        self,
        source: WeightSource | str | Path,
        start: int,
        end: int,
        has_embed: bool = False,
        has_head: bool = False,
        device: str = "cpu",
        dtype: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = open_source(source) if isinstance(source, (str, Path)) else source
        self._spec = SegmentSpec(start, end, has_embed, has_head)
        config = self.source.config
        if end > int(config["num_hidden_layers"]):
            raise ModelFileError(f"segment ends at {end}, model has {config['num_hidden_layers']}")
        self.family: str = str(config["model_type"])
        self.cfg = hf_config(config)
        self.device = torch.device(device)
        self.dtype = _resolve_dtype(dtype, config, self.device)
        self._hidden: int = int(self.cfg.hidden_size)
        self.vocab_size: int = int(self.cfg.vocab_size)
        self.max_length: int = int(self.cfg.max_position_embeddings)
        batch.register()
        self.cfg._attn_implementation = batch.PACKED  # per-row attention (batch.py)
        self._window = {i: _window_of(self.cfg, self.family, i) for i in range(start, end)}
        self.module = self._build()  # raises before any state exists
        self._sessions: SessionTable[SegmentKVCache] = SessionTable(self.max_length, clock)
        self._lock = threading.Lock()  # one step at a time: caches are not thread-safe

    # ---- construction -------------------------------------------------------
    def _build(self) -> nn.Module:
        layer_cls, norm_cls, rotary_cls = _family_classes(self.family)
        cfg, spec = self.cfg, self._spec
        # Module names mirror the checkpoint's (model.layers.{i}..., lm_head.weight)
        # so the part tensors load with a strict name check for free.
        root, inner = nn.Module(), nn.Module()
        root.model = inner
        embed: nn.Embedding | None = None
        norm: nn.Module | None = None
        lm_head: nn.Linear | None = None
        with torch.device("meta"):  # shapes only; real tensors are assigned below
            layers = {str(i): layer_cls(cfg, layer_idx=i) for i in range(spec.start, spec.end)}
            inner.layers = nn.ModuleDict(layers)
            if spec.has_embed:
                inner.embed_tokens = embed = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
            if spec.has_head:
                inner.norm = norm = norm_cls(cfg.hidden_size, eps=cfg.rms_norm_eps)
                root.lm_head = lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        tensors: dict[str, torch.Tensor] = {}
        for part in spec.parts():
            for name, t in self.source.read_part(part).items():
                tensors[name] = t.to(device=self.device, dtype=self.dtype)
        missing, unexpected = root.load_state_dict(tensors, strict=False, assign=True)
        if missing or unexpected:
            raise ModelFileError(
                f"weights do not fit: missing {missing[:4]}, unexpected {unexpected[:4]}"
            )
        if embed is not None and lm_head is not None and cfg.tie_word_embeddings:
            lm_head.weight = embed.weight  # one copy, as in the full model
        # The rotary table is computed, not loaded: build it for real, on the device.
        self._rotary = inner.rotary_emb = rotary_cls(config=cfg).to(self.device)
        root.requires_grad_(False).eval()
        meta = [n for n, t in root.state_dict().items() if t.is_meta]
        if meta:
            raise ModelFileError(f"tensors left unloaded: {meta[:4]}")
        self._layers = [layers[str(i)] for i in range(spec.start, spec.end)]
        self._embed, self._norm, self._lm_head = embed, norm, lm_head
        return root

    # ---- interface ---------------------------------------------------------
    @property
    def spec(self) -> SegmentSpec:
        return self._spec

    @property
    def hidden_size(self) -> int:
        return self._hidden

    def param_names(self) -> list[str]:
        """Checkpoint names of every tensor this runner holds."""
        return sorted(name for name, _ in self.module.named_parameters(remove_duplicate=False))

    def param_bytes(self) -> int:
        return sum(p.nbytes for p in self.module.parameters())

    @torch.inference_mode()
    def embed(self, token_ids: Sequence[int]) -> torch.Tensor:
        if self._embed is None:
            raise NotServed("this segment does not hold the embedding")
        ids = list(token_ids)
        if not ids or any(not isinstance(t, int) or not 0 <= t < self.vocab_size for t in ids):
            raise BadTokens(f"token ids must be non-empty ints in [0, {self.vocab_size})")
        x = torch.tensor([ids], dtype=torch.long, device=self.device)
        out: torch.Tensor = self._embed(x)
        return out

    def _check_hidden(self, hidden: Any) -> torch.Tensor:
        if not isinstance(hidden, torch.Tensor):
            raise BadFrame(f"hidden must be a tensor, got {type(hidden).__name__}")
        if (
            hidden.dim() != 3
            or hidden.shape[0] != 1
            or hidden.shape[1] < 1
            or hidden.shape[2] != self._hidden
        ):
            raise BadFrameShape(
                f"hidden shape {tuple(hidden.shape)}, expected [1, T, {self._hidden}]"
            )
        if hidden.dtype != self.dtype:
            raise BadFrameDtype(f"hidden dtype {hidden.dtype}, runner runs {self.dtype}")
        return hidden.to(self.device)

    @torch.inference_mode()
    def forward(self, session_id: str, hidden: torch.Tensor, start_pos: int) -> torch.Tensor:
        """Run this segment's layers on positions ``start_pos .. start_pos+T-1``."""
        return self.forward_batch([(session_id, hidden, start_pos)])[0]

    @torch.inference_mode()
    def forward_batch(self, steps: Sequence[tuple[str, torch.Tensor, int]]
                      ) -> list[torch.Tensor]:
        """One packed forward for the steps of several sessions (``batch.py``):
        each ``(session, hidden [1, T, h], start_pos)`` as ``forward`` would run
        it. All steps are checked before any cache is touched, and a failure
        leaves every cache as it was."""
        xs = [self._check_hidden(x) for _, x, _ in steps]
        sids = [sid for sid, _, _ in steps]
        starts = [pos for _, _, pos in steps]
        if not steps or len(set(sids)) != len(sids):
            raise BadFrame("a batch needs at least one step and each session once")
        if any(not isinstance(p, int) or p < 0 for p in starts):
            raise BadFrame(f"start_pos must be ints >= 0, got {starts!r}")
        lengths = [int(x.shape[1]) for x in xs]
        with self._lock:
            caches = []
            for sid, pos, n in zip(sids, starts, lengths, strict=True):
                cache = self._sessions.check_step(sid, pos, n)
                caches.append(cache if cache is not None else
                              SegmentKVCache(self._spec.start, len(self._layers), self.max_length))
            outs = xs  # a zero-layer (head) segment only counts the positions
            if self._layers:
                packed = batch.PackedBatch(caches, starts, lengths, self._window, self.device)
                outs = batch.split(self._run_layers(batch.join(xs), packed), lengths)
            for sid, cache, pos, n in zip(sids, caches, starts, lengths, strict=True):
                cache.advance(n)  # only now: a failure above leaves the caches untouched
                self._sessions.commit(sid, cache, pos + n)
        return outs

    def _run_layers(self, x: torch.Tensor, packed: batch.PackedBatch) -> torch.Tensor:
        pos = packed.positions()
        rope = self._rotary(x, pos)
        for layer in self._layers:
            x = layer(x, attention_mask=None, position_ids=pos, cache=packed, use_cache=True,
                      position_embeddings=rope, packed=packed)
        return x

    @torch.inference_mode()
    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        """Final norm + lm_head on the last position: float32 logits of shape [vocab]."""
        if self._norm is None or self._lm_head is None:
            raise NotServed("this segment does not hold the head")
        x = self._check_hidden(hidden)[:, -1:, :]
        logits: torch.Tensor = self._lm_head(self._norm(x))
        return logits[0, -1].float()

    @torch.inference_mode()
    def head_batch(self, hiddens: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """``head`` of several sessions' last positions in one product."""
        if len(hiddens) == 1:
            return [self.head(hiddens[0])]
        if self._norm is None or self._lm_head is None:
            raise NotServed("this segment does not hold the head")
        last = torch.cat([self._check_hidden(h)[:, -1:, :] for h in hiddens], dim=1)
        logits: torch.Tensor = self._lm_head(self._norm(last))
        return list(logits[0].float())

    def new_sampler(self, params: SamplingParams) -> Sampler:
        return Sampler(params)

    def encode_hidden(self, hidden: torch.Tensor, wire_dtype: str = "float32") -> WireTensor:
        return wire.to_wire(hidden, wire_dtype)

    def decode_hidden(self, w: WireTensor) -> torch.Tensor:
        return wire.from_wire(
            w, dtype=self.dtype, device=self.device, expect_shape=(1, None, self._hidden)
        )

    def encode_batch(self, hiddens: Sequence[torch.Tensor],
                     wire_dtype: str = "float32") -> WireTensor:
        """The rows back to back as one ``[1, sum(T_i), h]`` wire tensor (a view
        when they are the rows of one packed output, as a batch's are)."""
        return wire.to_wire(batch.join(hiddens), wire_dtype)

    def decode_batch(self, w: WireTensor, lengths: Sequence[int]) -> list[torch.Tensor]:
        x = self.decode_hidden(w)
        if sum(lengths) != x.shape[1]:
            raise BadFrameShape(f"rows {list(lengths)} do not add up to {x.shape[1]}")
        return batch.split(x, lengths)

    def slice_hidden(self, hidden: torch.Tensor, start: int, end: int) -> torch.Tensor:
        return hidden[:, start:end]

    # ---- sessions ----------------------------------------------------------
    def session_length(self, session_id: str) -> int | None:
        with self._lock:
            return self._sessions.length(session_id)

    def truncate(self, session_id: str, length: int) -> None:
        """Forget positions >= ``length`` (replay from there). Unknown: SessionNotFound."""
        with self._lock:
            self._sessions.set_length(session_id, length)
            self._sessions.state(session_id).truncate(length)

    def end_session(self, session_id: str) -> bool:
        with self._lock:
            return self._sessions.pop(session_id) is not None

    def evict_idle(self, now: float, idle_timeout_s: float) -> list[str]:
        """Drop sessions unused for longer than ``idle_timeout_s`` (``now`` from the same clock)."""
        with self._lock:
            idle = self._sessions.idle(now, idle_timeout_s)
            for sid in idle:
                self._sessions.pop(sid)
            return idle

    def kv_bytes_per_token(self) -> int:
        """KV one more cached token costs on this segment (keys and values, all layers)."""
        cfg = self.cfg
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        per_layer = 2 * cfg.num_key_value_heads * head_dim * self.dtype.itemsize
        return per_layer * len(self._layers)

    def kv_bytes(self) -> int:
        with self._lock:
            return sum(c.nbytes() for c in self._sessions.states())

    def session_count(self) -> int:
        with self._lock:
            return len(self._sessions)


def chain_runners(
    source: WeightSource | str | Path, cuts: Sequence[int], **kwargs: Any
) -> list[TorchSegmentRunner]:
    """Runners for consecutive cut points (``[0, 5, 11, 16]`` -> three layer
    segments plus the zero-layer head segment), the route shape as an
    in-process pipeline (``pipeline.chain_specs``)."""
    from edgesplit.model.pipeline import chain_specs

    return [TorchSegmentRunner(source, s.start, s.end, s.has_embed, s.has_head, **kwargs)
            for s in chain_specs(cuts)]
