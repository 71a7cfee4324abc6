"""Profiles from config arithmetic agree with real parameter counts."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edgesplit.model.errors import UnsupportedModel
from edgesplit.model.loader import ModelDir, part_of
from edgesplit.model.profile import profile_model

FIXTURES = Path(__file__).parent / "fixtures"
# Published parameter counts of Llama-2 (HF model cards / num_parameters()).
KNOWN = {"llama2_7b_config.json": 6_738_415_616, "llama2_13b_config.json": 13_015_864_320}


@pytest.mark.parametrize("fixture", sorted(KNOWN))
def test_llama2_parameter_counts(fixture: str) -> None:
    p = profile_model(FIXTURES / fixture)
    assert abs(p.total_params - KNOWN[fixture]) / KNOWN[fixture] < 0.01
    assert p.total_params == KNOWN[fixture]  # the arithmetic is in fact exact
    assert p.dtype == "float16" and p.dtype_bytes == 2
    layer = p.layers[0]
    h = p.hidden_size
    assert layer.activation_bytes_per_token == h * 2
    assert layer.kv_bytes_per_token == 2 * h * 2  # MHA: kv_heads * head_dim == hidden
    matmul = layer.params - 2 * h
    assert layer.flops_per_token == 2 * matmul + 4 * h * p.context_len
    assert p.head.flops_per_token == 2 * 32000 * h and p.embed.flops_per_token == 0
    assert json.loads(p.to_json())["total_params"] == KNOWN[fixture]


def _meta_counts(config: dict[str, Any]) -> dict[str, int]:
    """Per-part parameter counts of the real transformers model, built on meta."""
    import torch
    from transformers import AutoModelForCausalLM

    from edgesplit.model.runner import hf_config

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(hf_config(config))  # type: ignore[no-untyped-call]
    counts: dict[str, int] = {}
    for name, t in model.named_parameters(remove_duplicate=False):
        part = part_of(name)
        assert part is not None
        counts[part] = counts.get(part, 0) + t.numel()
    return counts


def test_7b_profile_matches_meta_model() -> None:
    config = json.loads((FIXTURES / "llama2_7b_config.json").read_text())
    counts = _meta_counts(config)
    p = profile_model(config)
    assert {x.name: x.params for x in p.parts} == counts


@pytest.mark.parametrize(
    ("family", "extra"),
    [
        ("llama", {"attention_bias": True, "mlp_bias": True}),
        ("qwen2", {}),
        ("qwen3", {"attention_bias": True}),
        ("mistral", {"num_key_value_heads": 2, "head_dim": 24}),
    ],
)
def test_profile_matches_meta_model_per_family(family: str, extra: dict[str, Any]) -> None:
    config = {
        "model_type": family,
        "hidden_size": 96,
        "num_hidden_layers": 3,
        "intermediate_size": 160,
        "vocab_size": 300,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        **extra,
    }
    p = profile_model(config)
    assert {x.name: x.params for x in p.parts} == _meta_counts(config)


@pytest.mark.parametrize("family", ["llama", "qwen2", "qwen3", "mistral"])
def test_profile_matches_safetensors_headers(tiny_model: Callable[..., Path], family: str) -> None:
    model_dir = tiny_model(family)
    p = profile_model(model_dir)
    headers = ModelDir(model_dir).header_param_counts()
    assert {x.name: x.params for x in p.parts} == headers
    assert all(x.param_bytes == 4 * x.params for x in p.parts)
    assert p.tied == family.startswith("qwen")


def test_sliding_window_caps_attention_flops() -> None:
    config = json.loads((FIXTURES / "llama2_7b_config.json").read_text())
    config.update(model_type="mistral", sliding_window=128)
    p = profile_model(config, context_len=1024, dtype="bfloat16")
    layer = p.layers[0]
    assert (
        layer.flops_per_token
        == 2 * (layer.params - 2 * 4096) + layer.attn_flops_per_context_token * 128
    )
    assert p.dtype_bytes == 2


def test_profile_errors(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedModel):
        profile_model({"model_type": "bert"})
    with pytest.raises(UnsupportedModel):
        profile_model(FIXTURES / "llama2_7b_config.json", dtype="int3")


def test_to_core_profile() -> None:
    core = pytest.importorskip("edgesplit.core.types")
    p = profile_model(FIXTURES / "llama2_7b_config.json")
    c = p.to_core("llama-2-7b")
    assert isinstance(c, core.ModelProfile)
    assert c.num_layers == 32 and c.layers[0].weight_bytes == p.layers[0].param_bytes
    assert c.activation_bytes_per_token == 4096 * 2


def test_profile_imports_no_torch() -> None:
    code = (
        "import sys; from edgesplit.model.profile import profile_model; "
        f"profile_model({str(FIXTURES / 'llama2_13b_config.json')!r}); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
