"""Per-part cost profile of a model, from ``config.json`` arithmetic alone.

No weights are read and torch is not imported, so the planner side can profile
a 70B model it will never hold. Units: bytes, FLOPs, tokens.

Formulas (``h`` hidden, ``d`` head_dim, ``a`` attention heads, ``g`` kv heads,
``f`` intermediate, ``V`` vocab, ``b`` bytes per element, ``c`` context length):

* decoder layer parameters: q ``h*a*d``, k and v ``h*g*d`` each, o ``a*d*h``,
  gated MLP ``3*h*f``, two RMSNorms ``2*h`` (+ Qwen3's q/k norms ``2*d``), plus
  the biases the family has (Qwen2: q/k/v; Llama/Qwen3: ``attention_bias``,
  Llama: ``mlp_bias``).
* FLOPs per token of a layer = ``2 * matmul weights`` (one multiply-add per
  weight) ``+ 4*a*d*c`` (QK^T and attention x V over ``c`` cached tokens,
  ``c`` capped by a sliding window). Norms, rotary, softmax and activations are
  O(h) per token and ignored.
* ``embed``: ``V*h`` parameters, 0 FLOPs (a gather). ``head``: final norm ``h``
  + lm_head ``V*h`` (a copy of the embedding when tied), ``2*V*h`` FLOPs.
* activation bytes per token (what crosses a cut) = ``h*b``;
  KV bytes per token of a layer = ``2*g*d*b``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgesplit.model.errors import ModelFileError, UnsupportedModel

if TYPE_CHECKING:
    from edgesplit.core.types import ModelProfile as CoreModelProfile

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8, "int8": 1}
FAMILIES = ("llama", "qwen2", "qwen3", "mistral")
DEFAULT_CONTEXT = 512
# transformers' config-class defaults for keys a config.json may omit (5.x
# dataclass fields); an explicit null falls back to the derived value instead.
_DEFAULTS: dict[str, dict[str, Any]] = {
    "llama": {},
    "qwen2": {"num_key_value_heads": 32},
    "qwen3": {"num_key_value_heads": 32, "head_dim": 128},
    "mistral": {"num_key_value_heads": 8, "sliding_window": 4096},
}


@dataclass(frozen=True, slots=True)
class PartProfile:
    name: str  # "embed" | "layer.{i}" | "head", as in the shard manifest
    params: int
    param_bytes: int
    flops_per_token: float  # at the profile's context length
    attn_flops_per_context_token: int  # add this per extra cached token attended
    activation_bytes_per_token: int
    kv_bytes_per_token: int


@dataclass(frozen=True, slots=True)
class ModelProfile:
    family: str
    num_layers: int
    hidden_size: int
    vocab_size: int
    dtype: str
    dtype_bytes: int
    tied: bool
    context_len: int
    parts: tuple[PartProfile, ...]  # embed, layer.0 .. layer.{L-1}, head
    digest: str = ""

    @property
    def embed(self) -> PartProfile:
        return self.parts[0]

    @property
    def head(self) -> PartProfile:
        return self.parts[-1]

    @property
    def layers(self) -> tuple[PartProfile, ...]:
        return self.parts[1:-1]

    @property
    def total_params(self) -> int:
        """Unique parameters (a tied lm_head counted once), as HF reports them."""
        total = sum(p.params for p in self.parts)
        return total - self.vocab_size * self.hidden_size if self.tied else total

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["total_params"] = self.total_params
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def to_core(self, name: str = "") -> CoreModelProfile:
        """The planner's view (``edgesplit.core.types.ModelProfile``)."""
        from edgesplit.core.types import LayerCost
        from edgesplit.core.types import ModelProfile as CoreProfile

        def cost(p: PartProfile) -> LayerCost:
            return LayerCost(p.param_bytes, p.flops_per_token, p.kv_bytes_per_token)

        return CoreProfile(
            name=name or self.family,
            layers=tuple(cost(p) for p in self.layers),
            embed=cost(self.embed),
            head=cost(self.head),
            activation_bytes_per_token=self.embed.activation_bytes_per_token,
            digest=self.digest,
        )


def _load_config(src: str | Path | Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    if isinstance(src, Mapping):
        return dict(src), ""
    path = Path(src)
    root = path if path.is_dir() else path.parent
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise ModelFileError(f"{path} not found")
    digest = ""
    manifest = root / "manifest.json"
    if manifest.is_file():  # a shard directory: the profile names the model it describes
        digest = str(json.loads(manifest.read_text()).get("model_digest", ""))
    return json.loads(path.read_text()), digest


def profile_model(
    model: str | Path | Mapping[str, Any],
    dtype: str | None = None,
    context_len: int = DEFAULT_CONTEXT,
) -> ModelProfile:
    """Profile a model directory, a config.json path, or a config dict.

    ``dtype`` overrides the checkpoint's (``dtype`` / ``torch_dtype``, else float32).
    """
    c, digest = _load_config(model)
    family = c.get("model_type")
    if family not in FAMILIES:
        raise UnsupportedModel(f"model_type {family!r} not supported; use one of {FAMILIES}")
    try:
        h, n_layers, f, vocab = (
            int(c["hidden_size"]),
            int(c["num_hidden_layers"]),
            int(c["intermediate_size"]),
            int(c["vocab_size"]),
        )
        a = int(c["num_attention_heads"])
    except KeyError as exc:
        raise ModelFileError(f"config lacks {exc}") from exc
    c = {**_DEFAULTS[family], **c}
    g = int(c.get("num_key_value_heads") or a)
    d = int(c.get("head_dim") or h // a)
    dtype = dtype or str(c.get("dtype") or c.get("torch_dtype") or "float32")
    if dtype not in DTYPE_BYTES:
        raise UnsupportedModel(f"dtype {dtype!r} not supported")
    b = DTYPE_BYTES[dtype]

    matmul = h * a * d + 2 * h * g * d + a * d * h + 3 * h * f
    extra = 2 * h
    if family == "qwen2":
        extra += a * d + 2 * g * d
    elif c.get("attention_bias"):
        extra += a * d + 2 * g * d + h
    if family == "llama" and c.get("mlp_bias"):
        extra += 2 * f + h
    if family == "qwen3":
        extra += 2 * d
    layer_params = matmul + extra
    attn_per_ctx = 4 * a * d
    act = h * b
    kv = 2 * g * d * b

    parts = [PartProfile("embed", vocab * h, vocab * h * b, 0.0, 0, act, 0)]
    for i in range(n_layers):
        window = _window(c, family, i)
        ctx = context_len if window is None else min(context_len, window)
        parts.append(
            PartProfile(
                f"layer.{i}",
                layer_params,
                layer_params * b,
                float(2 * matmul + attn_per_ctx * ctx),
                attn_per_ctx,
                act,
                kv,
            )
        )
    head_params = h + vocab * h
    parts.append(PartProfile("head", head_params, head_params * b, float(2 * vocab * h), 0, act, 0))
    return ModelProfile(
        family=family,
        num_layers=n_layers,
        hidden_size=h,
        vocab_size=vocab,
        dtype=dtype,
        dtype_bytes=b,
        tied=bool(c.get("tie_word_embeddings", False)),
        context_len=context_len,
        parts=tuple(parts),
        digest=digest,
    )


def _window(c: Mapping[str, Any], family: str, layer: int) -> int | None:
    if family == "llama":
        return None
    if family in ("qwen2", "qwen3"):
        if not c.get("use_sliding_window"):
            return None
        types = c.get("layer_types")
        if types is not None:
            return int(c["sliding_window"]) if types[layer] == "sliding_attention" else None
        return int(c["sliding_window"]) if layer >= int(c.get("max_window_layers", 28)) else None
    w = c.get("sliding_window")
    return None if w is None else int(w)


def profile_json(path: str, dtype: str | None = None) -> dict[str, Any]:
    """The planner's profile schema plus descriptive fields."""
    prof = profile_model(path, dtype=dtype)
    core = prof.to_core(name=path.rstrip("/").rsplit("/", 1)[-1])

    def cost(c: Any, part: Any) -> dict[str, Any]:
        return {"weight_bytes": c.weight_bytes, "flops_per_token": c.flops_per_token,
                "kv_bytes_per_token": c.kv_bytes_per_token, "params": part.params}

    return {
        "name": core.name, "digest": core.digest, "family": prof.family,
        "dtype": prof.dtype, "num_layers": prof.num_layers, "hidden_size": prof.hidden_size,
        "total_params": prof.total_params,
        "activation_bytes_per_token": core.activation_bytes_per_token,
        "embed": cost(core.embed, prof.embed), "head": cost(core.head, prof.head),
        "layers": [cost(c, p) for c, p in zip(core.layers, prof.layers, strict=True)],
    }
