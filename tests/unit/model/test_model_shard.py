"""Loader, per-part shards, manifest digests and digest verification."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from edgesplit.model import pipeline
from edgesplit.model.errors import ModelFileError, ShardDigestMismatch, UnsupportedModel
from edgesplit.model.loader import ModelDir, part_names, part_of
from edgesplit.model.runner import TorchSegmentRunner, chain_runners
from edgesplit.model.shard import Manifest, ShardDir, model_digest, sha256_file, shard_model

PROMPT = [5, 17, 42, 99, 3]


@pytest.fixture(scope="module")
def shards(tiny_model: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("shards_qwen3")
    shard_model(tiny_model("qwen3"), out)
    return out


def test_part_names() -> None:
    assert part_of("model.embed_tokens.weight") == "embed"
    assert part_of("model.layers.12.mlp.up_proj.weight") == "layer.12"
    assert part_of("model.norm.weight") == "head"
    assert part_of("lm_head.weight") == "head"
    assert part_of("model.layers.0.self_attn.rotary_emb.inv_freq") is None
    with pytest.raises(UnsupportedModel):
        part_of("vision_tower.weight")


def test_manifest_contents(shards: Path, tiny_model: Callable[..., Path]) -> None:
    m = Manifest.load(shards)
    assert (m.family, m.num_layers, m.hidden_size, m.dtype, m.tied) == (
        "qwen3",
        4,
        64,
        "float32",
        True,
    )
    assert [s.name for s in m.shards] == [
        "embed",
        "layer.0",
        "layer.1",
        "layer.2",
        "layer.3",
        "head",
    ]
    for s in m.shards:
        data = (shards / s.file).read_bytes()
        assert s.sha256 == hashlib.sha256(data).hexdigest() and s.bytes == len(data)
        assert s.dtype == "float32" and s.params > 0
    src = ModelDir(tiny_model("qwen3"))
    assert (
        sum(s.params for s in m.shards) - m.shard("embed").params
        == sum(src.header_param_counts().values()) - src.header_param_counts()["embed"]
    )
    config = json.loads((shards / "config.json").read_text())
    assert m.model_digest == model_digest(config, m.digests())
    for name in (
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
    ):
        assert (shards / name).is_file()
    assert Manifest.from_json(m.to_json()) == m


def test_tied_head_shard_carries_lm_head(shards: Path) -> None:
    tensors = ShardDir(shards).read_part("head")
    embed = ShardDir(shards).read_part("embed")
    assert set(tensors) == {"model.norm.weight", "lm_head.weight"}
    assert torch.equal(tensors["lm_head.weight"], embed["model.embed_tokens.weight"])


def test_sharding_is_deterministic_and_checkpoint_layout_independent(
    tiny_model: Callable[..., Path], tmp_path: Path, shards: Path
) -> None:
    """A multi-file checkpoint (index.json) gives the very same shards and digest."""
    from transformers import AutoModelForCausalLM

    src = tiny_model("qwen3")
    split_ckpt = tmp_path / "multi"
    AutoModelForCausalLM.from_pretrained(src).save_pretrained(split_ckpt, max_shard_size="40KB")
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(src / f, split_ckpt / f)
    assert (split_ckpt / "model.safetensors.index.json").is_file()
    assert len(list(split_ckpt.glob("model-*.safetensors"))) > 1
    again = shard_model(split_ckpt, tmp_path / "out")
    assert again.digests() == Manifest.load(shards).digests()
    assert again.model_digest == Manifest.load(shards).model_digest


def test_runner_from_shards_loads_only_its_layers(shards: Path, tmp_path: Path) -> None:
    # Only layer 1-2 files present: the runner must not need any other.
    partial = tmp_path / "partial"
    partial.mkdir()
    for f in ("manifest.json", "config.json", "layer.1.safetensors", "layer.2.safetensors"):
        shutil.copy(shards / f, partial / f)
    src = ShardDir(partial)
    runner = TorchSegmentRunner(src, 1, 3)
    assert src.parts_read == ["layer.1", "layer.2"]
    names = runner.param_names()
    assert names and all(n.startswith(("model.layers.1.", "model.layers.2.")) for n in names)
    assert {n.split(".")[2] for n in names} == {"1", "2"}
    full = sum(p.numel() for p in runner.module.parameters())
    assert full == sum(Manifest.load(shards).shard(f"layer.{i}").params for i in (1, 2))
    with pytest.raises(ModelFileError):
        TorchSegmentRunner(ShardDir(partial), 0, 2)  # layer.0 file is absent


def test_shard_runners_equal_model_dir_runners(
    shards: Path, tiny_model: Callable[..., Path]
) -> None:
    from_dir = pipeline.generate(chain_runners(tiny_model("qwen3"), [0, 1, 4]), PROMPT, 6)
    assert pipeline.generate(chain_runners(shards, [0, 1, 4]), PROMPT, 6) == from_dir


def test_digest_mismatch_rejected_previous_runner_keeps_serving(
    shards: Path, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    shutil.copytree(shards, work)
    good = chain_runners(work, [0, 2, 4])
    logits = pipeline.step(good, "s", PROMPT, 0)

    # The assignment names another digest than the file has.
    expected = Manifest.load(work).digests()
    expected["layer.2"] = "0" * 64
    with pytest.raises(ShardDigestMismatch) as info:
        TorchSegmentRunner(ShardDir(work, expected), 2, 4)
    assert info.value.shard == "layer.2" and info.value.expected == "0" * 64

    # The file was tampered with after sharding (manifest still says the old digest).
    path = work / "layer.3.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ShardDigestMismatch):
        TorchSegmentRunner(work, 2, 4)

    # The runners built before keep their session and weights.
    tok = int(torch.argmax(logits))
    after = pipeline.step(good, "s", [tok], len(PROMPT))
    reference = chain_runners(shards, [0, 2, 4])
    pipeline.step(reference, "s", PROMPT, 0)
    assert torch.equal(after, pipeline.step(reference, "s", [tok], len(PROMPT)))


def test_shard_holding_another_layer_rejected(shards: Path, tmp_path: Path) -> None:
    work = tmp_path / "swap"
    shutil.copytree(shards, work)
    shutil.copy(work / "layer.1.safetensors", work / "layer.0.safetensors")
    digest = sha256_file(work / "layer.0.safetensors")
    with pytest.raises(ModelFileError):
        ShardDir(work, {"layer.0": digest}).read_part("layer.0")


def test_loader_errors(tmp_path: Path, tiny_model: Callable[..., Path]) -> None:
    with pytest.raises(ModelFileError):
        ModelDir(tmp_path)  # no config.json
    (tmp_path / "config.json").write_text(
        json.dumps({"model_type": "gpt2", "num_hidden_layers": 2})
    )
    with pytest.raises(UnsupportedModel):
        ModelDir(tmp_path)
    shutil.copy(tiny_model("llama") / "config.json", tmp_path / "config.json")
    with pytest.raises(ModelFileError, match="no model.safetensors"):
        ModelDir(tmp_path)
    (tmp_path / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"model.norm.weight": "model-00001-of-00002.safetensors"}})
    )
    with pytest.raises(ModelFileError, match="missing weight files"):
        ModelDir(tmp_path)
    with pytest.raises(ModelFileError):
        Manifest.load(tmp_path)


def test_untied_model_without_lm_head_rejected(
    tiny_model: Callable[..., Path], tmp_path: Path
) -> None:
    from safetensors.torch import load_file, save_file

    src = tiny_model("llama")
    shutil.copy(src / "config.json", tmp_path / "config.json")
    tensors = load_file(src / "model.safetensors")
    del tensors["lm_head.weight"]
    save_file(tensors, tmp_path / "model.safetensors")
    with pytest.raises(ModelFileError, match="lm_head"):
        ModelDir(tmp_path)


def test_shard_progress_names_every_part_in_order(tiny_model: Callable[..., Path],
                                                  tmp_path: Path) -> None:
    """``model shard`` shows progress from this callback: one call per part written."""
    seen: list[tuple[str, int]] = []
    m = shard_model(tiny_model("qwen3"), tmp_path / "out", on_part=lambda n, t: seen.append((n, t)))
    assert [n for n, _ in seen] == part_names(m.num_layers)
    assert {t for _, t in seen} == {m.num_layers + 2}
