"""Read a local Hugging Face model directory part by part.

Only safetensors headers are parsed up front; tensors are read on request with
``safe_open``, so a node that serves layers 10-19 of a 13B model never maps the
other layers' bytes into memory. Parts use the manifest naming: ``"embed"``,
``"layer.{i}"``, ``"head"`` (final norm + lm_head).
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgesplit.model.errors import ModelFileError, UnsupportedModel

if TYPE_CHECKING:
    import torch

SUPPORTED_FAMILIES = ("llama", "qwen2", "qwen3", "mistral")

_LAYER_RE = re.compile(r"^model\.layers\.(\d+)\.")
# Old checkpoints stored the rotary tables; they are recomputed from the config.
_IGNORED_RE = re.compile(r"(^|\.)rotary_emb\.inv_freq$")


def read_config(model_dir: str | Path) -> dict[str, Any]:
    """Load ``config.json`` and check the family is one we can split."""
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        raise ModelFileError(f"{path} not found")
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"{path}: {exc}") from exc
    family = config.get("model_type")
    if family not in SUPPORTED_FAMILIES:
        raise UnsupportedModel(
            f"model_type {family!r} not supported; use one of {SUPPORTED_FAMILIES}"
        )
    if config.get("num_hidden_layers", 0) < 1:
        raise ModelFileError(f"{path}: num_hidden_layers missing")
    return dict(config)


def part_of(name: str) -> str | None:
    """Which part a checkpoint tensor belongs to; None for tensors we drop."""
    if _IGNORED_RE.search(name):
        return None
    m = _LAYER_RE.match(name)
    if m:
        return f"layer.{int(m.group(1))}"
    if name.startswith("model.embed_tokens."):
        return "embed"
    if name.startswith(("model.norm.", "lm_head.")):
        return "head"
    raise UnsupportedModel(f"unexpected tensor {name!r} in checkpoint")


def part_names(num_layers: int) -> list[str]:
    """All parts of a model in pipeline order."""
    return ["embed", *(f"layer.{i}" for i in range(num_layers)), "head"]


def _weight_files(root: Path) -> list[Path]:
    index = root / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map: dict[str, str] = json.loads(index.read_text())["weight_map"]
        except (OSError, ValueError, KeyError) as exc:
            raise ModelFileError(f"{index}: {exc}") from exc
        files = [root / f for f in sorted(set(weight_map.values()))]
    elif (root / "model.safetensors").is_file():
        files = [root / "model.safetensors"]
    else:
        raise ModelFileError(f"{root}: no model.safetensors or model.safetensors.index.json")
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise ModelFileError(f"missing weight files: {missing}")
    return files


class ModelDir:
    """A local HF checkpoint of a supported family, indexed by part."""

    def __init__(self, model_dir: str | Path) -> None:
        from safetensors import safe_open

        self.root = Path(model_dir)
        self.config = read_config(self.root)
        self.family: str = self.config["model_type"]
        self.num_layers: int = int(self.config["num_hidden_layers"])
        self._file_of: dict[str, Path] = {}
        self._parts: dict[str, list[str]] = defaultdict(list)
        for path in _weight_files(self.root):
            try:
                with safe_open(str(path), framework="pt") as f:  # header only
                    keys = list(f.keys())
            except Exception as exc:  # safetensors raises its own SafetensorError
                raise ModelFileError(f"{path}: {exc}") from exc
            for key in keys:
                part = part_of(key)
                if part is not None:
                    self._file_of[key] = path
                    self._parts[part].append(key)
        # A tied model stores no lm_head; the head part then reuses embed's matrix.
        self.tied = "lm_head.weight" not in self._file_of
        if self.tied and not self.config.get("tie_word_embeddings", False):
            raise ModelFileError(f"{self.root}: lm_head.weight missing and embeddings are not tied")
        for part in part_names(self.num_layers):
            if part not in self._parts:
                raise ModelFileError(f"{self.root}: no tensors for part {part!r}")
        extra = set(self._parts) - set(part_names(self.num_layers))
        if extra:
            raise ModelFileError(
                f"{self.root}: tensors for parts beyond the config: {sorted(extra)}"
            )

    def tensor_names(self, part: str) -> list[str]:
        """Checkpoint names of a part; for a tied head this includes ``lm_head.weight``."""
        if part not in self._parts:
            raise ModelFileError(f"unknown part {part!r}")
        names = sorted(self._parts[part])
        return sorted([*names, "lm_head.weight"]) if part == "head" and self.tied else names

    def read(self, names: Iterable[str]) -> dict[str, torch.Tensor]:
        """Read exactly these tensors, one ``safe_open`` per file touched."""
        from safetensors import safe_open

        wanted = list(names)
        by_file: dict[Path, list[tuple[str, str]]] = defaultdict(list)
        for name in wanted:
            # The tied head's lm_head is the embedding matrix under another name.
            src = "model.embed_tokens.weight" if name == "lm_head.weight" and self.tied else name
            if src not in self._file_of:
                raise ModelFileError(f"tensor {name!r} not in {self.root}")
            by_file[self._file_of[src]].append((name, src))
        out: dict[str, torch.Tensor] = {}
        for path, pairs in sorted(by_file.items()):
            with safe_open(str(path), framework="pt") as f:
                for name, src in pairs:
                    out[name] = f.get_tensor(src)
        return out

    def read_part(self, part: str) -> dict[str, torch.Tensor]:
        return self.read(self.tensor_names(part))

    def header_param_counts(self) -> dict[str, int]:
        """Parameters per part from safetensors headers (no tensor data read)."""
        from safetensors import safe_open

        counts: dict[str, int] = {}
        for part in part_names(self.num_layers):
            total = 0
            for name in self.tensor_names(part):
                src = (
                    "model.embed_tokens.weight" if name == "lm_head.weight" and self.tied else name
                )
                with safe_open(str(self._file_of[src]), framework="pt") as f:
                    n = 1
                    for d in f.get_slice(src).get_shape():
                        n *= d
                total += n
            counts[part] = total
        return counts
