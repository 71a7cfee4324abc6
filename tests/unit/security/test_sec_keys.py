"""Key files, raw public keys, key ids and the dev key helper."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from edgesplit.security import keys
from edgesplit.security.errors import KeyMaterialError


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_signing_key_round_trip_and_private_file_is_0600(tmp_path: Path) -> None:
    key = keys.generate_signing_key()
    keys.save_private_key(key, tmp_path / "cp.pem")
    keys.save_public_key(key.public_key(), tmp_path / "cp.pub.pem")
    assert _mode(tmp_path / "cp.pem") == 0o600
    loaded = keys.load_signing_key(tmp_path / "cp.pem")
    assert keys.public_bytes(loaded) == keys.public_bytes(key)
    pub = keys.load_signing_public_key(tmp_path / "cp.pub.pem")
    assert keys.public_bytes(pub) == keys.public_bytes(key)


def test_agreement_key_round_trip(tmp_path: Path) -> None:
    key = keys.generate_agreement_key()
    keys.save_private_key(key, tmp_path / "n.pem")
    keys.save_public_key(key.public_key(), tmp_path / "n.pub.pem")
    assert keys.public_bytes(keys.load_agreement_key(tmp_path / "n.pem")) == keys.public_bytes(key)
    pub = keys.load_agreement_public_key(tmp_path / "n.pub.pem")
    assert keys.public_bytes(pub) == keys.public_bytes(key)


def test_save_private_key_refuses_to_clobber(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    keys.save_private_key(keys.generate_signing_key(), path)
    with pytest.raises(FileExistsError):
        keys.save_private_key(keys.generate_signing_key(), path)
    replacement = keys.generate_signing_key()
    keys.save_private_key(replacement, path, overwrite=True)
    assert keys.key_id(keys.load_signing_key(path)) == keys.key_id(replacement)
    assert _mode(path) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["k.pem"]  # no temp files left behind


def test_raw_public_bytes_round_trip_and_key_id() -> None:
    sk, ak = keys.generate_signing_key(), keys.generate_agreement_key()
    raw_s, raw_a = keys.public_bytes(sk), keys.public_bytes(ak)
    assert len(raw_s) == len(raw_a) == keys.RAW_KEY_LEN
    assert keys.public_bytes(keys.signing_public_from_bytes(raw_s)) == raw_s
    assert keys.public_bytes(keys.agreement_public_from_bytes(raw_a)) == raw_a
    kid = keys.key_id(sk)
    assert len(kid) == 16 and int(kid, 16) >= 0
    assert kid == keys.key_id(sk.public_key()) == keys.key_id(raw_s)
    assert kid != keys.key_id(keys.generate_signing_key())


def test_raw_public_key_of_wrong_length_is_refused() -> None:
    with pytest.raises(KeyMaterialError):
        keys.signing_public_from_bytes(b"\x01" * 31)
    with pytest.raises(KeyMaterialError):
        keys.agreement_public_from_bytes(b"\x01" * 33)


def test_loading_the_wrong_kind_or_a_missing_or_garbage_file_is_a_clear_error(
    tmp_path: Path,
) -> None:
    keys.save_private_key(keys.generate_agreement_key(), tmp_path / "x.pem")
    with pytest.raises(KeyMaterialError, match="expected Ed25519 private key"):
        keys.load_signing_key(tmp_path / "x.pem")
    with pytest.raises(KeyMaterialError, match="cannot read"):
        keys.load_agreement_key(tmp_path / "absent.pem")
    (tmp_path / "junk.pem").write_bytes(b"not a key")
    with pytest.raises(KeyMaterialError, match="junk.pem"):
        keys.load_agreement_key(tmp_path / "junk.pem")
    with pytest.raises(KeyMaterialError):
        keys.load_signing_public_key(tmp_path / "junk.pem")


def test_ensure_dev_keys_creates_once_then_reuses(tmp_path: Path) -> None:
    first = keys.ensure_dev_keys(tmp_path / "dev", "node-a")
    second = keys.ensure_dev_keys(tmp_path / "dev", "node-a")
    assert keys.key_id(first.signing) == keys.key_id(second.signing)
    assert keys.key_id(first.agreement) == keys.key_id(second.agreement)
    assert _mode(tmp_path / "dev" / "node-a.ed25519.pem") == 0o600
    assert _mode(tmp_path / "dev" / "node-a.x25519.pem") == 0o600
    pub = keys.load_agreement_public_key(tmp_path / "dev" / "node-a.x25519.pub.pem")
    assert keys.key_id(pub) == keys.key_id(first.agreement)
    other = keys.ensure_dev_keys(tmp_path / "dev", "node-b")
    assert keys.key_id(other.signing) != keys.key_id(first.signing)
