"""The shard registry: per-layer shards stored encrypted, one key per shard.

Layout under the registry directory::

    blobs/<sha256>.esh   ciphertext (``edgesplit.security.shards`` format),
                         named by the SHA-256 of the *plaintext* shard
    keys.json            {sha256: hex key}, mode 0600 — the only secret here
    index.json           models and their shards (names, digests, sizes)

A shard counts as stored only when its blob and its key are both there, so a
crash between the two leaves nothing half-imported; importing the same shard
again finds it and does nothing (one key per plaintext, never re-encrypted).
Blobs are bound to their digest as associated data, so one shard's blob cannot
be served as another's.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgesplit.model import bundle
from edgesplit.model.errors import ModelFileError
from edgesplit.rpc.assignments import ShardEntry
from edgesplit.rpc.errors import NotFound
from edgesplit.security.keys import write_secret_file
from edgesplit.security.shards import CHUNK_SIZE, ShardEncryptor

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StoredShard:
    """One registry entry, as ListShards reports it."""

    name: str
    sha256: str
    size_bytes: int
    model_digest: str


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """A model the registry can roll out: its layer count and its shards by name."""

    digest: str
    num_layers: int
    shards: Mapping[str, ShardEntry]


class Registry:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._blobs = self.root / "blobs"
        self._blobs.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # imports may run in a worker thread
        self._keys: dict[str, str] = _read_json(self.root / "keys.json")
        self._models: dict[str, ModelEntry] = {}
        for digest, raw in _read_json(self.root / "index.json").items():
            shards = {s["name"]: ShardEntry(**s) for s in raw["shards"]}
            self._models[digest] = ModelEntry(digest, int(raw["num_layers"]), shards)

    # ---- import ------------------------------------------------------------
    def import_shard_dir(self, shard_dir: str | Path) -> ModelEntry:
        """Encrypt every shard of a shard directory (plus its ``meta`` bundle)."""
        from edgesplit.model.shard import Manifest, sha256_file

        src = Path(shard_dir)
        manifest = Manifest.load(src)
        entries: dict[str, ShardEntry] = {}
        for info in manifest.shards:
            path = src / info.file
            if not self._has(info.sha256):
                actual = sha256_file(path)
                if actual != info.sha256:  # refuse to publish what the manifest does not vouch for
                    raise ModelFileError(f"{path}: sha256 {actual}, manifest says {info.sha256}")
                with path.open("rb") as fh:
                    self._store(info.sha256, iter(lambda: fh.read(CHUNK_SIZE), b""))
            entries[info.name] = ShardEntry(info.name, info.sha256, info.bytes)
        meta = bundle.pack_shard_dir(src)
        meta_sha = hashlib.sha256(meta).hexdigest()
        if not self._has(meta_sha):
            self._store(meta_sha, iter([meta]))
        entries[bundle.META_SHARD] = ShardEntry(bundle.META_SHARD, meta_sha, len(meta))
        model = ModelEntry(manifest.model_digest, manifest.num_layers, entries)
        with self._lock:
            self._models[model.digest] = model
            self._save_index()
        log.info("registry holds model %s: %d shards", model.digest[:12], len(entries))
        return model

    def _store(self, sha256: str, chunks: Iterator[bytes]) -> None:
        """Encrypt under a fresh key into a temp file; publish blob, then key."""
        enc = ShardEncryptor(sha256)
        final = self.blob_path(sha256)
        tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
        try:
            with tmp.open("wb") as out:
                for chunk in chunks:
                    out.write(enc.update(chunk))
                out.write(enc.finalize())
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        with self._lock:
            self._keys[sha256] = enc.key.hex()
            write_secret_file(self.root / "keys.json",
                              json.dumps(self._keys, sort_keys=True).encode())

    def _save_index(self) -> None:
        raw = {d: {"num_layers": m.num_layers,
                   "shards": [asdict(s) for s in m.shards.values()]}
               for d, m in self._models.items()}
        tmp = self.root / "index.json.tmp"
        tmp.write_text(json.dumps(raw, indent=1, sort_keys=True))
        os.replace(tmp, self.root / "index.json")

    # ---- lookups --------------------------------------------------------------
    def _has(self, sha256: str) -> bool:
        return sha256 in self._keys and self.blob_path(sha256).is_file()

    def blob_path(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise NotFound(f"no shard {sha256[:80]!r}")  # never a path component from a caller
        return self._blobs / f"{sha256}.esh"

    def model(self, digest: str) -> ModelEntry | None:
        return self._models.get(digest)

    def key(self, sha256: str) -> bytes:
        hexkey = self._keys.get(sha256)
        if hexkey is None:
            raise NotFound(f"no key for shard {sha256}")
        return bytes.fromhex(hexkey)

    def blob_size(self, sha256: str) -> int:
        try:
            return self.blob_path(sha256).stat().st_size
        except FileNotFoundError:
            raise NotFound(f"shard {sha256} is not stored") from None

    def read(self, sha256: str, offset: int, length: int) -> bytes:
        with self.blob_path(sha256).open("rb") as fh:
            fh.seek(offset)
            return fh.read(length)

    def list(self) -> list[StoredShard]:
        return [StoredShard(s.name, s.sha256, s.size_bytes, m.digest)
                for m in sorted(self._models.values(), key=lambda m: m.digest)
                for s in m.shards.values()]


def _read_json(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ModelFileError(f"{path}: expected a JSON object")
    return data
