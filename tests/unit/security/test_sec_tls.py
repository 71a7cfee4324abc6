"""Dev CA and TLS material loading."""

from __future__ import annotations

import datetime as dt
import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store

from edgesplit.security.errors import KeyMaterialError
from edgesplit.security.tls import load_tls_material, make_dev_ca

NAMES = ["node-a", "orchestrator"]


@pytest.fixture(scope="module")
def ca_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    make_dev_ca(d, NAMES)
    return d


def test_material_loads_and_private_keys_are_0600(ca_dir: Path) -> None:
    ca = make_dev_ca(ca_dir, NAMES)  # reuses what the fixture wrote
    for name in NAMES:
        cert, key, root = ca.material(name)
        assert cert.startswith(b"-----BEGIN CERTIFICATE-----")
        assert b"PRIVATE KEY" in key and root == ca.ca_cert.read_bytes()
        assert stat.S_IMODE(ca.certs[name][1].stat().st_mode) == 0o600
    assert stat.S_IMODE(ca.ca_key.stat().st_mode) == 0o600


def test_leaf_certs_verify_against_the_ca_for_server_and_client(ca_dir: Path) -> None:
    root = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
    store = Store([root])
    now = dt.datetime.now(dt.UTC)
    for name in NAMES:
        leaf = x509.load_pem_x509_certificate((ca_dir / f"{name}.pem").read_bytes())
        builder = PolicyBuilder().store(store).time(now)
        for subject in (x509.DNSName(name), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))):
            chain = builder.build_server_verifier(subject).verify(leaf, [])
            assert chain[-1] == root
        client = builder.build_client_verifier().verify(leaf, [])
        assert client.chain[-1] == root


def test_cert_from_another_ca_does_not_verify(ca_dir: Path, tmp_path: Path) -> None:
    make_dev_ca(tmp_path, ["node-a"])
    root = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
    foreign = x509.load_pem_x509_certificate((tmp_path / "node-a.pem").read_bytes())
    verifier = PolicyBuilder().store(Store([root])).build_server_verifier(x509.DNSName("node-a"))
    with pytest.raises(x509.verification.VerificationError):
        verifier.verify(foreign, [])


def test_new_ca_reissues_leaves(tmp_path: Path) -> None:
    make_dev_ca(tmp_path, ["n"])
    old_leaf = (tmp_path / "n.pem").read_bytes()
    (tmp_path / "ca.key").unlink()
    make_dev_ca(tmp_path, ["n"])
    assert (tmp_path / "n.pem").read_bytes() != old_leaf
    load_tls_material(tmp_path / "n.pem", tmp_path / "n.key", tmp_path / "ca.pem")


def test_load_errors_name_the_problem(ca_dir: Path, tmp_path: Path) -> None:
    a, o = ca_dir / "node-a", ca_dir / "orchestrator"
    ca = ca_dir / "ca.pem"
    with pytest.raises(KeyMaterialError, match="does not match"):
        load_tls_material(f"{a}.pem", f"{o}.key", ca)
    with pytest.raises(KeyMaterialError, match="cannot read"):
        load_tls_material(tmp_path / "missing.pem", f"{a}.key", ca)
    (tmp_path / "junk").write_bytes(b"junk")
    with pytest.raises(KeyMaterialError, match="junk"):
        load_tls_material(f"{a}.pem", f"{a}.key", tmp_path / "junk")
    with pytest.raises(KeyMaterialError, match="junk"):
        load_tls_material(tmp_path / "junk", f"{a}.key", ca)
    with pytest.raises(KeyMaterialError, match="private key"):
        load_tls_material(f"{a}.pem", tmp_path / "junk", ca)


def test_unusable_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        make_dev_ca(tmp_path, ["../evil"])
