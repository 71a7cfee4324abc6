"""The model's non-weight files as one registry shard, ``meta``.

A node that fetches its shards from the registry has no model directory, yet
it needs ``config.json`` to build its layers and, on an entry node, the
tokenizer files. They travel as one more shard — encrypted, content-addressed
and named in the signed assignment like the weight shards — so the node checks
them the same way before it uses them.

The bundle is canonical JSON (sorted names, base64 bodies), so packing the
same files anywhere gives the same bytes and the same SHA-256: a node with a
local copy of the model recognises the registry's ``meta`` shard without
fetching it. No torch import.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from edgesplit.model.errors import ModelFileError

META_SHARD: Final = "meta"
_FORMAT: Final = "edgesplit.model-files.v1"
_MANIFEST: Final = "manifest.json"
_MAX_FILE: Final = 256 << 20  # a tokenizer is MBs; anything near this is not model metadata


def model_files(shard_dir: str | Path) -> dict[str, bytes]:
    """Every plain file beside the shards: config, generation config, tokenizer.

    Shard files and the manifest are left out (the manifest names every shard's
    digest; a node needs only its own, from its assignment).
    """
    root = Path(shard_dir)
    try:
        manifest = json.loads((root / _MANIFEST).read_text())
        shard_files = {s["file"] for s in manifest["shards"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelFileError(f"{root}: no readable {_MANIFEST} ({exc})") from exc
    files: dict[str, bytes] = {}
    for path in sorted(root.iterdir()):
        name = path.name
        if (
            name == _MANIFEST
            or name in shard_files
            or not _safe_name(name)
            or name.endswith(".tmp")
            or not path.is_file()
        ):
            continue
        if path.stat().st_size > _MAX_FILE:
            raise ModelFileError(f"{path}: too large for the model-files bundle")
        files[name] = path.read_bytes()
    if "config.json" not in files:
        raise ModelFileError(f"{root}: config.json missing")
    return files


def pack(files: Mapping[str, bytes]) -> bytes:
    """Canonical bytes of a bundle: the same files always give the same digest."""
    for name in files:
        if not _safe_name(name):
            raise ModelFileError(f"unsafe file name {name!r} in model-files bundle")
    body = {name: base64.b64encode(files[name]).decode() for name in sorted(files)}
    return json.dumps(
        {"files": body, "format": _FORMAT}, sort_keys=True, separators=(",", ":")
    ).encode()


def pack_shard_dir(shard_dir: str | Path) -> bytes:
    return pack(model_files(shard_dir))


def unpack(data: bytes) -> dict[str, bytes]:
    """Inverse of pack. Names are checked, so a bundle cannot write outside
    the directory it is unpacked into."""
    try:
        raw = json.loads(data)
        if raw.get("format") != _FORMAT:
            raise ValueError(f"format {raw.get('format')!r}")
        files = {str(k): base64.b64decode(v, validate=True) for k, v in raw["files"].items()}
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
        raise ModelFileError(f"not a model-files bundle: {exc}") from exc
    bad = [n for n in files if not _safe_name(n)]
    if bad:
        raise ModelFileError(f"unsafe file names in model-files bundle: {bad[:3]}")
    if "config.json" not in files:
        raise ModelFileError("model-files bundle has no config.json")
    return files


def write_dir(files: Mapping[str, bytes], out_dir: str | Path) -> Path:
    """Write the files into ``out_dir``, all or nothing: they are written to a
    temporary sibling that is renamed into place, so a crash never leaves a
    half-written directory that a later start would trust."""
    out = Path(out_dir)
    if out.is_dir():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        for name, body in files.items():
            (tmp / name).write_bytes(body)
        try:
            os.rename(tmp, out)
        except OSError:
            if not out.is_dir():  # lost a race to an identical writer: theirs is as good
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _safe_name(name: str) -> bool:
    return (
        bool(name)
        and name not in (".", "..")
        and not name.startswith(".")
        and "/" not in name
        and "\\" not in name
        and "\0" not in name
    )
