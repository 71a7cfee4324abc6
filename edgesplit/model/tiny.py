"""Generate small, random, deterministic Hugging Face models locally.

The test bed and the tests never download weights (docs/architecture.md §11): they use a
model written here with a fixed seed. Same arguments give byte-identical
safetensors, so the model digest in a manifest is stable across runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from edgesplit.model.errors import UnsupportedModel

FAMILIES = ("llama", "qwen2", "qwen3", "mistral")

BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"

# A few sentences of plain English so the BPE merges learn common words; the
# byte-level alphabet still covers any input, so every text round-trips.
_CORPUS = """\
The quick brown fox jumps over the lazy dog. A model is split into segments of
layers, and each segment runs on a different machine at the edge of the network.
Hidden states travel from one machine to the next, and the entry node samples the
next token. The weather today is sunny with a light breeze from the west. She
opened the window, looked at the river and wrote a short letter to her brother.
Numbers like 0 1 2 3 4 5 6 7 8 9 10 100 1000 appear in text as well as words.
Once upon a time there was a small town where everyone knew each other's name.
In the morning the market was full of people buying bread, fruit and vegetables.
"""


def _tokenizer_dir(out: Path, vocab_size: int) -> int:
    """Train a byte-level BPE tokenizer and save it where AutoTokenizer finds it.

    Returns the size of the trained vocabulary (specials included).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS.splitlines() * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD
    )
    fast.model_max_length = 2048
    fast.save_pretrained(str(out))
    return int(tok.get_vocab_size())


def _config(
    family: str,
    *,
    layers: int,
    hidden: int,
    heads: int,
    kv_heads: int,
    intermediate: int,
    vocab: int,
    ids: dict[str, int],
    dtype: str,
    tie: bool,
    sliding_window: int | None,
    max_positions: int,
) -> Any:
    from transformers import AutoConfig

    kwargs: dict[str, Any] = {
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": intermediate,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": hidden // heads,
        "max_position_embeddings": max_positions,
        "rms_norm_eps": 1e-6,
        # Far above a trained model's 0.02: with 0.02 a random tiny model's
        # residual stream is all embedding and greedy decoding repeats one
        # token, which would make split-vs-whole equality tests toothless.
        "initializer_range": 0.25,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
        "tie_word_embeddings": tie,
        "bos_token_id": ids["bos"],
        "eos_token_id": ids["eos"],
        "pad_token_id": ids["pad"],
        "dtype": dtype,
    }
    if family == "mistral":
        kwargs["sliding_window"] = sliding_window
    elif family in ("qwen2", "qwen3") and sliding_window is not None:
        kwargs.update(use_sliding_window=True, sliding_window=sliding_window, max_window_layers=0)
    return AutoConfig.for_model(family, **kwargs)


def write_tiny_model(
    out_dir: str | Path,
    family: str = "qwen3",
    layers: int = 4,
    hidden: int = 64,
    heads: int = 4,
    kv_heads: int = 2,
    intermediate: int | None = None,
    vocab: int | None = None,
    seed: int = 0,
    dtype: str = "float32",
    tie_word_embeddings: bool | None = None,
    sliding_window: int | None = None,
    max_position_embeddings: int = 2048,
) -> Path:
    """Write a random ``family`` model + tokenizer + generation config to ``out_dir``.

    ``vocab`` defaults to the trained tokenizer's size rounded up to 64 (a larger
    value adds ids the tokenizer never emits, which is harmless).
    ``tie_word_embeddings`` defaults to what the family's small models do
    (Qwen ties, Llama / Mistral do not). Sliding windows are off unless asked.
    """
    if family not in FAMILIES:
        raise UnsupportedModel(f"family {family!r} not in {FAMILIES}")
    if hidden % heads or heads % kv_heads:
        raise ValueError("hidden must divide by heads, heads by kv_heads")
    from transformers import AutoModelForCausalLM, GenerationConfig

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n_tok = _tokenizer_dir(out, vocab_size=256 + 3 + 253)  # 512 ids: bytes, specials, merges
    vocab_size = vocab if vocab is not None else -(-n_tok // 64) * 64
    if vocab_size < n_tok:
        raise ValueError(f"vocab {vocab_size} smaller than the tokenizer's {n_tok}")
    ids = {"pad": 0, "bos": 1, "eos": 2}  # order of the special tokens above
    tie = family.startswith("qwen") if tie_word_embeddings is None else tie_word_embeddings
    config = _config(
        family,
        layers=layers,
        hidden=hidden,
        heads=heads,
        kv_heads=kv_heads,
        intermediate=intermediate or 3 * hidden,
        vocab=vocab_size,
        ids=ids,
        dtype=dtype,
        tie=tie,
        sliding_window=sliding_window,
        max_positions=max_position_embeddings,
    )
    # The seed and a CPU float32 build make the init deterministic; the cast to
    # the target dtype afterwards is deterministic too.
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)  # type: ignore[no-untyped-call]
    model = model.to(getattr(torch, dtype)).eval()
    model.generation_config = GenerationConfig(  # type: ignore[no-untyped-call]
        bos_token_id=ids["bos"], eos_token_id=ids["eos"], pad_token_id=ids["pad"], do_sample=False
    )
    model.save_pretrained(str(out), safe_serialization=True)
    (out / "edgesplit_tiny.json").write_text(
        json.dumps({"family": family, "seed": seed, "layers": layers, "hidden": hidden}) + "\n"
    )
    return out
