"""Key generation, PEM files, raw public keys and key ids.

Two key kinds: Ed25519 signs (control plane -> assignments), X25519 agrees
(node <-> node link keys, shard-key wrapping). Private keys are written 0600
and never overwritten in place, so a crash mid-write cannot leave a node
holding half a key.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from edgesplit.security.errors import KeyMaterialError

__all__ = [
    "RAW_KEY_LEN",
    "DevKeys",
    "PrivateKey",
    "PublicKey",
    "agreement_public_from_bytes",
    "ensure_dev_keys",
    "generate_agreement_key",
    "generate_signing_key",
    "key_id",
    "load_agreement_key",
    "load_agreement_public_key",
    "load_signing_key",
    "load_signing_public_key",
    "public_bytes",
    "save_private_key",
    "save_public_key",
    "signing_public_from_bytes",
    "write_secret_file",
]

PrivateKey = Ed25519PrivateKey | X25519PrivateKey
PublicKey = Ed25519PublicKey | X25519PublicKey
RAW_KEY_LEN: Final = 32
_KEY_ID_HEX: Final = 16  # 64 bits: plenty to tell a handful of trusted signers apart


def generate_signing_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def generate_agreement_key() -> X25519PrivateKey:
    return X25519PrivateKey.generate()


def _write_new(path: Path, data: bytes, mode: int) -> bool:
    """Write ``data`` to ``path`` atomically unless it exists; True if we wrote it.

    A temp file in the same directory is linked into place: ``os.link`` fails if
    the target exists, so two processes racing to create the same dev key both
    end up using whichever landed first instead of clobbering it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)  # before any secret byte is written
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        os.unlink(tmp)


def write_secret_file(path: str | os.PathLike[str], data: bytes) -> None:
    """Atomically write (or replace) a file readable only by its owner (0600)."""
    _replace(Path(path), data, 0o600)


def _replace(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)  # the rename itself survives a crash
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _private_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),  # file permissions / k8s secrets protect it
    )


def _public_pem(key: PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def save_private_key(
    key: PrivateKey, path: str | os.PathLike[str], *, overwrite: bool = False
) -> None:
    """Write a PKCS#8 PEM private key with mode 0600."""
    p = Path(path)
    if overwrite:
        _replace(p, _private_pem(key), 0o600)
    elif not _write_new(p, _private_pem(key), 0o600):
        raise FileExistsError(f"{p} exists; pass overwrite=True to replace it")


def save_public_key(key: PublicKey, path: str | os.PathLike[str]) -> None:
    """Write a SubjectPublicKeyInfo PEM public key with mode 0644 (replaces)."""
    _replace(Path(path), _public_pem(key), 0o644)


def _read(path: str | os.PathLike[str], what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise KeyMaterialError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc


def _wrong_kind(obj: object, path: str | os.PathLike[str], what: str) -> KeyMaterialError:
    return KeyMaterialError(f"{path}: expected {what}, found {type(obj).__name__}")


def _load_private(path: str | os.PathLike[str], what: str) -> object:
    try:
        return serialization.load_pem_private_key(_read(path, what), password=None)
    except (ValueError, TypeError) as exc:
        raise KeyMaterialError(f"{path}: not an unencrypted PEM private key ({exc})") from exc


def _load_public(path: str | os.PathLike[str], what: str) -> object:
    try:
        return serialization.load_pem_public_key(_read(path, what))
    except ValueError as exc:
        raise KeyMaterialError(f"{path}: not a PEM public key ({exc})") from exc


# One function per kind (rather than a generic loader) so callers get a precise
# type and a file holding the other kind of key is refused with a clear message.
def load_signing_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    key = _load_private(path, what := "Ed25519 private key")
    if not isinstance(key, Ed25519PrivateKey):
        raise _wrong_kind(key, path, what)
    return key


def load_agreement_key(path: str | os.PathLike[str]) -> X25519PrivateKey:
    key = _load_private(path, what := "X25519 private key")
    if not isinstance(key, X25519PrivateKey):
        raise _wrong_kind(key, path, what)
    return key


def load_signing_public_key(path: str | os.PathLike[str]) -> Ed25519PublicKey:
    key = _load_public(path, what := "Ed25519 public key")
    if not isinstance(key, Ed25519PublicKey):
        raise _wrong_kind(key, path, what)
    return key


def load_agreement_public_key(path: str | os.PathLike[str]) -> X25519PublicKey:
    key = _load_public(path, what := "X25519 public key")
    if not isinstance(key, X25519PublicKey):
        raise _wrong_kind(key, path, what)
    return key


def public_bytes(key: PrivateKey | PublicKey) -> bytes:
    """Raw 32-byte public key (what assignments and protos carry)."""
    pub = key.public_key() if isinstance(key, (Ed25519PrivateKey, X25519PrivateKey)) else key
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _check_raw(raw: bytes, what: str) -> bytes:
    if len(raw) != RAW_KEY_LEN:
        raise KeyMaterialError(f"{what} must be {RAW_KEY_LEN} bytes, got {len(raw)}")
    return bytes(raw)


def signing_public_from_bytes(raw: bytes) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(_check_raw(raw, "Ed25519 public key"))


def agreement_public_from_bytes(raw: bytes) -> X25519PublicKey:
    return X25519PublicKey.from_public_bytes(_check_raw(raw, "X25519 public key"))


def key_id(key: PrivateKey | PublicKey | bytes) -> str:
    """First 16 hex digits of SHA-256 over the raw public key."""
    raw = key if isinstance(key, bytes) else public_bytes(key)
    return hashlib.sha256(raw).hexdigest()[:_KEY_ID_HEX]


@dataclass(frozen=True, slots=True)
class DevKeys:
    """A development identity: one signing and one agreement key."""

    signing: Ed25519PrivateKey
    agreement: X25519PrivateKey


def ensure_dev_keys(directory: str | os.PathLike[str], name: str) -> DevKeys:
    """Load ``<name>.ed25519.pem`` / ``<name>.x25519.pem`` from ``directory``, creating them if absent.

    Public halves are written beside them (``*.pub.pem``) so a test bed can hand
    them to peers. For local test beds only: keys are unencrypted on disk.
    """
    d = Path(directory)
    sign_path, agree_path = d / f"{name}.ed25519.pem", d / f"{name}.x25519.pem"
    # Each write is create-if-absent, so concurrent starters converge on one key.
    _write_new(sign_path, _private_pem(generate_signing_key()), 0o600)
    _write_new(agree_path, _private_pem(generate_agreement_key()), 0o600)
    keys = DevKeys(load_signing_key(sign_path), load_agreement_key(agree_path))
    save_public_key(keys.signing.public_key(), d / f"{name}.ed25519.pub.pem")
    save_public_key(keys.agreement.public_key(), d / f"{name}.x25519.pub.pem")
    return keys
