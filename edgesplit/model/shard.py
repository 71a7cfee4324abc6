"""Per-part weight shards: one safetensors file per layer plus embed and head.

Shards are what the registry serves and node agents fetch (docs/architecture.md §2): each
is content-addressed by the SHA-256 of its file bytes, and the model digest
binds them all together with the config. A runner built from a shard directory
hashes the exact bytes it then deserialises, so what was verified is what runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgesplit.model.errors import ModelFileError, ShardDigestMismatch
from edgesplit.model.loader import ModelDir, part_names, part_of, read_config

if TYPE_CHECKING:
    import torch

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
# Files beside the weights that a node needs to rebuild the model's pieces.
_AUX_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
)


@dataclass(frozen=True, slots=True)
class ShardInfo:
    name: str  # "embed" | "layer.{i}" | "head"
    file: str  # relative to the shard directory
    sha256: str
    bytes: int
    dtype: str
    params: int


@dataclass(frozen=True, slots=True)
class Manifest:
    model_digest: str
    family: str
    num_layers: int
    hidden_size: int
    dtype: str
    tied: bool
    shards: tuple[ShardInfo, ...]
    version: int = MANIFEST_VERSION

    def shard(self, name: str) -> ShardInfo:
        for s in self.shards:
            if s.name == name:
                return s
        raise ModelFileError(f"manifest has no shard {name!r}")

    def digests(self) -> dict[str, str]:
        return {s.name: s.sha256 for s in self.shards}

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        try:
            raw = json.loads(text)
            shards = tuple(ShardInfo(**s) for s in raw.pop("shards"))
            manifest = cls(shards=shards, **raw)
        except (ValueError, TypeError, KeyError) as exc:
            raise ModelFileError(f"bad manifest: {exc}") from exc
        if manifest.version != MANIFEST_VERSION:
            raise ModelFileError(f"manifest version {manifest.version} unsupported")
        return manifest

    @classmethod
    def load(cls, shard_dir: str | Path) -> Manifest:
        path = Path(shard_dir) / MANIFEST
        if not path.is_file():
            raise ModelFileError(f"{path} not found")
        return cls.from_json(path.read_text())


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def model_digest(config: Mapping[str, Any], shard_digests: Mapping[str, str]) -> str:
    """sha256(canonical config JSON, then the sorted shard digests, one per line).

    Sorting makes it independent of shard order; the config is included because
    the same weights under another config (rope, eps) are another model.
    """
    h = hashlib.sha256(canonical_json(dict(config)))
    for digest in sorted(shard_digests.values()):
        h.update(b"\n" + digest.encode())
    return h.hexdigest()


def _dtype_name(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def _write_atomic(path: Path, data: bytes) -> None:
    # A crash mid-write must not leave a file under the final name.
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def shard_model(model_dir: str | Path, out_dir: str | Path,
                on_part: Callable[[str, int], None] | None = None) -> Manifest:
    """Split a HF checkpoint into per-part safetensors shards plus a manifest.

    Reads one part at a time, so peak memory is about one layer, not the model.
    ``on_part(name, total)`` is called after each part is written (progress).
    """
    from safetensors.torch import save

    src = ModelDir(model_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    infos: list[ShardInfo] = []
    parts = part_names(src.num_layers)
    for part in parts:
        tensors = {k: v.contiguous() for k, v in src.read_part(part).items()}
        data = save(tensors, metadata={"part": part})
        file = f"{part}.safetensors"
        _write_atomic(out / file, data)
        dtypes = sorted({_dtype_name(t) for t in tensors.values()})
        infos.append(
            ShardInfo(
                name=part,
                file=file,
                sha256=hashlib.sha256(data).hexdigest(),
                bytes=len(data),
                dtype=dtypes[0] if len(dtypes) == 1 else ",".join(dtypes),
                params=sum(t.numel() for t in tensors.values()),
            )
        )
        del tensors, data
        if on_part is not None:
            on_part(part, len(parts))
    for name in _AUX_FILES:
        if (src.root / name).is_file():
            shutil.copyfile(src.root / name, out / name)
    manifest = Manifest(
        model_digest=model_digest(src.config, {s.name: s.sha256 for s in infos}),
        family=src.family,
        num_layers=src.num_layers,
        hidden_size=int(src.config["hidden_size"]),
        dtype=infos[1].dtype,  # the first decoder layer's: what the layers run in
        tied=src.tied,
        shards=tuple(infos),
    )
    _write_atomic(out / MANIFEST, manifest.to_json().encode())
    return manifest


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class ShardDir:
    """A shard directory as a weight source for a runner.

    ``expected_digests`` (part -> sha256) normally come from the signed
    assignment; parts it does not name are checked against the manifest, so a
    corrupted file is caught either way.
    """

    def __init__(
        self, shard_dir: str | Path, expected_digests: Mapping[str, str] | None = None
    ) -> None:
        self.root = Path(shard_dir)
        self.manifest = Manifest.load(self.root)
        self.config = read_config(self.root)
        self.family = self.manifest.family
        self.num_layers = self.manifest.num_layers
        self.expected = dict(expected_digests or {})
        self.parts_read: list[str] = []  # which shards this source opened, in order

    def read_part(self, part: str) -> dict[str, torch.Tensor]:
        from safetensors.torch import load

        info = self.manifest.shard(part)
        path = self.root / info.file
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ModelFileError(f"shard {part!r}: {exc}") from exc
        expected = self.expected.get(part, info.sha256)
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected:
            raise ShardDigestMismatch(part, expected, actual)
        self.parts_read.append(part)
        tensors = load(data)
        # A valid digest over the wrong file (manifest mix-up) must not load
        # another layer's weights under this layer's index.
        wrong = [k for k in tensors if part_of(k) != part]
        if wrong:
            raise ModelFileError(f"shard {part!r} holds tensors of other parts: {wrong[:3]}")
        return tensors
