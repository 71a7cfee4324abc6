"""Shared fixtures: tiny models written once per test session (no downloads)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

FAMILIES = ("llama", "qwen2", "qwen3", "mistral")
NEW_TOKENS = 8
FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``tiny_model(family, **kwargs) -> dir``, cached per argument set."""
    from edgesplit.model.tiny import write_tiny_model

    cache: dict[tuple[Any, ...], Path] = {}

    def make(family: str = "qwen3", **kwargs: Any) -> Path:
        key = (family, *sorted(kwargs.items()))
        if key not in cache:
            out = tmp_path_factory.mktemp(f"tiny_{family}")
            cache[key] = write_tiny_model(out, family=family, **kwargs)
        return cache[key]

    return make


@pytest.fixture(scope="session")
def reference_generate() -> Callable[[Path, Sequence[int], int], list[int]]:
    """Monolithic greedy ``generate`` from transformers, the ground truth."""
    import torch
    from transformers import AutoModelForCausalLM

    models: dict[Path, Any] = {}

    def run(model_dir: Path, prompt: Sequence[int], new_tokens: int = NEW_TOKENS) -> list[int]:
        if model_dir not in models:
            models[model_dir] = AutoModelForCausalLM.from_pretrained(model_dir)  # eval mode
        ids = torch.tensor([list(prompt)])
        out = models[model_dir].generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=new_tokens,
            # Neither stop at eos nor suppress it (min_new_tokens would): the
            # runners know nothing of eos, so every step is compared as is.
            eos_token_id=None,
            do_sample=False,
        )
        return [int(t) for t in out[0, len(prompt) :]]

    return run
