"""Split generation must equal transformers' monolithic greedy generate, token for token."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from edgesplit.model import pipeline
from edgesplit.model.base import SamplingParams
from edgesplit.model.runner import TorchSegmentRunner, chain_runners

FAMILIES = ("llama", "qwen2", "qwen3", "mistral")
CUTS = {1: [0, 4], 2: [0, 2, 4], 3: [0, 1, 3, 4], 4: [0, 1, 2, 3, 4]}
PROMPT_LENGTHS = (1, 5, 17)


def prompt_of(n: int, offset: int = 0) -> list[int]:
    return [(7 * i + 3 + offset) % 497 + 3 for i in range(n)]


@pytest.mark.parametrize("segments", sorted(CUTS))
@pytest.mark.parametrize("family", FAMILIES)
def test_split_greedy_equals_monolithic(
    tiny_model: Callable[..., Path],
    reference_generate: Callable[..., list[int]],
    family: str,
    segments: int,
) -> None:
    model_dir = tiny_model(family)
    runners = chain_runners(model_dir, CUTS[segments])
    refs = []
    for n in PROMPT_LENGTHS:
        prompt = prompt_of(n)
        refs.append(reference_generate(model_dir, prompt))
        assert pipeline.generate(runners, prompt, 8) == refs[-1], (family, n)
    assert max(len(set(r)) for r in refs) >= 4, "degenerate model: the comparison has no teeth"
    assert all(r.session_count() == 0 for r in runners)


@pytest.mark.parametrize("family", FAMILIES)
def test_entry_holds_embed_and_head_ring(
    tiny_model: Callable[..., Path], reference_generate: Callable[..., list[int]], family: str
) -> None:
    """The ring: the entry holds embed + first layers, and head in the zero-layer
    segment that closes the ring (hidden states cross the wire both ways)."""
    model_dir = tiny_model(family)
    entry = TorchSegmentRunner(model_dir, 0, 2, has_embed=True)
    rest = TorchSegmentRunner(model_dir, 2, 4)
    head = TorchSegmentRunner(model_dir, 4, 4, has_head=True)
    prompt = prompt_of(5)
    got = pipeline.generate([entry, rest, head], prompt, 8, wire_dtype="float32")
    assert got == reference_generate(model_dir, prompt)


def test_interleaved_sessions_equal_each_alone(
    tiny_model: Callable[..., Path], reference_generate: Callable[..., list[int]]
) -> None:
    model_dir = tiny_model("qwen3")
    runners = chain_runners(model_dir, [0, 1, 3, 4])
    prompts = {"a": prompt_of(1), "b": prompt_of(5, 11), "c": prompt_of(17, 29)}
    head = runners[-1]
    samplers = {s: head.new_sampler(SamplingParams()) for s in prompts}
    feed = {s: list(p) for s, p in prompts.items()}
    pos = dict.fromkeys(prompts, 0)
    out: dict[str, list[int]] = {s: [] for s in prompts}
    for _ in range(8):  # round robin: each step of one session between steps of the others
        for s in prompts:
            tok = samplers[s].choose(pipeline.step(runners, s, feed[s], pos[s]))
            out[s].append(tok)
            pos[s] += len(feed[s])
            feed[s] = [tok]
    assert runners[1].session_count() == 3
    for s, p in prompts.items():
        assert out[s] == reference_generate(model_dir, p), s


@pytest.mark.parametrize("family", ["mistral", "qwen2"])
def test_sliding_window_matches_monolithic(
    tiny_model: Callable[..., Path], reference_generate: Callable[..., list[int]], family: str
) -> None:
    """Prompt longer than the window: the runner masks where transformers drops keys."""
    model_dir = tiny_model(family, sliding_window=6)
    runners = chain_runners(model_dir, [0, 3, 4])
    prompt = prompt_of(17)
    assert pipeline.generate(runners, prompt, 8) == reference_generate(model_dir, prompt)


def test_split_logits_match_monolithic_forward(tiny_model: Callable[..., Path]) -> None:
    from transformers import AutoModelForCausalLM

    model_dir = tiny_model("llama")
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    prompt = prompt_of(17)
    with torch.inference_mode():
        want = model(torch.tensor([prompt])).logits[0, -1]
    got = pipeline.step(chain_runners(model_dir, [0, 1, 3, 4]), "s", prompt, 0)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_chunked_prefill_and_replay_after_truncate(tiny_model: Callable[..., Path]) -> None:
    """A prefill in two chunks (start_pos > 0, T > 1) needs an explicit causal mask;
    truncating and re-running a suffix (replay) gives the same logits again."""
    runners = chain_runners(tiny_model("qwen2"), [0, 2, 4])
    prompt = prompt_of(17)
    whole = pipeline.step(runners, "whole", prompt, 0)
    pipeline.step(runners, "chunked", prompt[:9], 0)
    chunked = pipeline.step(runners, "chunked", prompt[9:], 9)
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-5)
    for r in runners:
        r.truncate("chunked", 12)
        assert r.session_length("chunked") == 12
    replayed = pipeline.step(runners, "chunked", prompt[12:], 12)
    torch.testing.assert_close(replayed, whole, rtol=0, atol=1e-5)


def test_bfloat16_wire_runs_close(tiny_model: Callable[..., Path]) -> None:
    runners = chain_runners(tiny_model("qwen3"), [0, 2, 4])
    prompt = prompt_of(5)
    exact = pipeline.step(runners, "f32", prompt, 0, wire_dtype="float32")
    lossy = pipeline.step(runners, "bf16", prompt, 0, wire_dtype="bfloat16")
    assert torch.equal(exact, pipeline.step(runners, "plain", prompt, 0))
    torch.testing.assert_close(lossy, exact, rtol=0, atol=0.05)
