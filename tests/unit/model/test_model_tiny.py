"""Locally generated tiny models: deterministic, loadable, with a working tokenizer."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from edgesplit.model.errors import UnsupportedModel
from edgesplit.model.tiny import write_tiny_model


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_arguments_same_bytes(tiny_model: Callable[..., Path], tmp_path: Path) -> None:
    first = tiny_model("llama")
    again = write_tiny_model(tmp_path / "again", family="llama")
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert _digest(first / name) == _digest(again / name), name
    other_seed = write_tiny_model(tmp_path / "seed1", family="llama", seed=1)
    assert _digest(other_seed / "model.safetensors") != _digest(first / "model.safetensors")


def test_tokenizer_round_trips_and_has_specials(tiny_model: Callable[..., Path]) -> None:
    from transformers import AutoTokenizer

    model_dir = tiny_model("qwen3")
    tok = AutoTokenizer.from_pretrained(model_dir)
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
    for text in ("The quick brown fox.", "  spaces\tand\nnewlines ", "Ünïcödé ✓ 🦊 數字 123"):
        ids = tok(text)["input_ids"]
        assert tok.decode(ids) == text
        assert max(ids) < json.loads((model_dir / "config.json").read_text())["vocab_size"]
    gen = json.loads((model_dir / "generation_config.json").read_text())
    assert gen["eos_token_id"] == 2 and gen["bos_token_id"] == 1


def test_config_shape(tiny_model: Callable[..., Path]) -> None:
    cfg = json.loads((tiny_model("mistral") / "config.json").read_text())
    assert cfg["model_type"] == "mistral" and cfg["num_hidden_layers"] == 4
    assert cfg["hidden_size"] == 64 and cfg["num_key_value_heads"] == 2
    assert cfg["max_position_embeddings"] == 2048 and cfg["vocab_size"] % 64 == 0
    assert cfg["tie_word_embeddings"] is False


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedModel):
        write_tiny_model(tmp_path, family="gpt2")
    with pytest.raises(ValueError):
        write_tiny_model(tmp_path, hidden=65)
