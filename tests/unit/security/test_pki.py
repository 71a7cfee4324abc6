"""``edgesplit pki``: a CA, one directory per component, identities in the SAN,
the signing key only with the broadcaster, owner-only files."""

from __future__ import annotations

import datetime as dt
import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from edgesplit.cli import main as cli_main
from edgesplit.security.errors import KeyMaterialError
from edgesplit.security.keys import load_signing_key, load_signing_public_key
from edgesplit.security.pki import (
    DEFAULT_SERVICES,
    Identity,
    add_component,
    identity_of,
    init_pki,
)
from edgesplit.security.tls import load_tls_material

NODES = ["node-a", "node-b"]
CLIENTS = ["alice"]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    assert cli_main(["pki", "init", str(d), *(f"--node={n}" for n in NODES),
                     "--client", "alice", "--admin", "ops", "--domain", "edgesplit.svc"]) == 0
    return d


def component_dirs(root: Path) -> dict[Identity, Path]:
    dirs = {Identity(s, s): root / "services" / s for s in DEFAULT_SERVICES}
    dirs |= {Identity("node", n): root / "nodes" / n for n in NODES}
    dirs |= {Identity("client", c): root / "clients" / c for c in CLIENTS}
    return dirs | {Identity("admin", "ops"): root / "admins" / "ops"}


def ca_cert(root: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate((root / "ca" / "ca.pem").read_bytes())


def leaf(d: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate((d / "tls.pem").read_bytes())


def test_every_component_verifies_against_the_ca_and_names_itself(pki: Path) -> None:
    store = Store([ca_cert(pki)])
    builder = PolicyBuilder().store(store).time(dt.datetime.now(dt.UTC))
    for ident, d in component_dirs(pki).items():
        cert = leaf(d)
        assert identity_of(cert) == ident
        assert builder.build_client_verifier().verify(cert, []).chain[-1] == ca_cert(pki)
        load_tls_material(d / "tls.pem", d / "tls.key", d / "ca.pem")  # key matches cert
        assert (d / "ca.pem").read_bytes() == (pki / "ca" / "ca.pem").read_bytes()
        if ident.role in ("client", "admin"):
            continue
        # Peers dial a service or node by its name (compose/k8s DNS) or locally.
        for host in (x509.DNSName(ident.name), x509.DNSName(f"{ident.name}.edgesplit.svc"),
                     x509.IPAddress(ipaddress.ip_address("127.0.0.1"))):
            builder.build_server_verifier(host).verify(cert, [])


def test_a_client_certificate_is_no_server_certificate(pki: Path) -> None:
    verifier = (PolicyBuilder().store(Store([ca_cert(pki)]))
                .build_server_verifier(x509.DNSName("alice")))
    with pytest.raises(VerificationError):
        verifier.verify(leaf(pki / "clients" / "alice"), [])


def test_each_directory_holds_only_its_own_secrets(pki: Path) -> None:
    keys = {d: (d / "tls.key").read_bytes() for d in component_dirs(pki).values()}
    assert len(set(keys.values())) == len(keys)
    signing = [p for p in pki.rglob("control.ed25519.pem")]
    assert signing == [pki / "services" / "broadcaster" / "control.ed25519.pem"]
    signer = load_signing_key(signing[0])
    for ident, d in component_dirs(pki).items():
        names = {p.name for p in d.iterdir()}
        expected = {"ca.pem", "tls.pem", "tls.key"}
        if ident == Identity("broadcaster", "broadcaster"):
            expected.add("control.ed25519.pem")
        if ident.role == "node":  # agents verify assignments with the public half
            expected.add("control.ed25519.pub.pem")
            pub = load_signing_public_key(d / "control.ed25519.pub.pem")
            assert pub.public_bytes_raw() == signer.public_key().public_bytes_raw()
        assert names == expected, d
    assert not any(p.name == "ca.key" for d in component_dirs(pki).values() for p in d.iterdir())


def test_files_are_owner_only(pki: Path) -> None:
    for path in pki.rglob("*"):
        mode = stat.S_IMODE(path.stat().st_mode)
        if path.is_file():
            assert mode == 0o600, path
        elif path.parent != pki:  # the role folders only list names
            assert mode == 0o700, path


def test_init_again_keeps_everything_and_completes_what_is_missing(tmp_path: Path) -> None:
    init_pki(tmp_path, nodes=["n1"])
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    written = init_pki(tmp_path, nodes=["n1", "n2"], clients=["c"])
    assert [c.identity for c in written] == [Identity("node", "n2"), Identity("client", "c")]
    assert all(p.read_bytes() == data for p, data in before.items())
    store = Store([ca_cert(tmp_path)])
    PolicyBuilder().store(store).build_client_verifier().verify(leaf(tmp_path / "nodes/n2"), [])


def test_add_node_and_client_under_the_existing_ca(pki: Path, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    init_pki(root, nodes=["node-a"])
    assert cli_main(["pki", "add-node", str(root), "node-z", "--host", "10.1.2.3"]) == 0
    assert cli_main(["pki", "add-client", str(root), "bob"]) == 0
    store = Store([ca_cert(root)])
    z = leaf(root / "nodes" / "node-z")
    assert identity_of(z) == Identity("node", "node-z")
    PolicyBuilder().store(store).build_server_verifier(
        x509.IPAddress(ipaddress.ip_address("10.1.2.3"))).verify(z, [])
    assert identity_of(leaf(root / "clients" / "bob")) == Identity("client", "bob")
    assert (root / "nodes" / "node-z" / "control.ed25519.pub.pem").exists()
    # Issued by this deployment's CA, not another one's.
    with pytest.raises(VerificationError):
        PolicyBuilder().store(Store([ca_cert(pki)])).build_client_verifier().verify(z, [])


def test_add_refuses_to_clobber_and_replace_rotates(tmp_path: Path) -> None:
    init_pki(tmp_path, nodes=["n1"])
    old = (tmp_path / "nodes" / "n1" / "tls.key").read_bytes()
    with pytest.raises(SystemExit, match="exists; pass --replace"):
        cli_main(["pki", "add-node", str(tmp_path), "n1"])
    assert (tmp_path / "nodes" / "n1" / "tls.key").read_bytes() == old
    add_component(tmp_path, Identity("node", "n1"), replace=True)
    assert (tmp_path / "nodes" / "n1" / "tls.key").read_bytes() != old


def test_add_without_a_ca_and_bad_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyMaterialError, match="no CA"):
        add_component(tmp_path, Identity("node", "n1"))
    with pytest.raises(SystemExit, match="run `edgesplit pki init"):
        cli_main(["pki", "add-client", str(tmp_path / "none"), "c"])
    for bad in ("../up", "a/b", ".hidden", "", "x" * 64, "under_score"):
        with pytest.raises(ValueError, match="unusable component name"):
            init_pki(tmp_path / "bad", nodes=[bad])
    with pytest.raises(ValueError, match="broadcaster"):
        init_pki(tmp_path / "nosigner", services=["monitor"])
    with pytest.raises(ValueError, match="unknown services"):
        init_pki(tmp_path / "typo", services=["broadcaster", "moniter"])


def test_identities_are_what_the_authorisation_table_reads(pki: Path) -> None:
    from edgesplit.rpc import authz

    for ident, d in component_dirs(pki).items():
        uris = leaf(d).extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value.get_values_for_type(x509.UniformResourceIdentifier)
        parsed = authz.Identity.parse(uris[0])
        assert parsed is not None and (parsed.role.value, parsed.name) == (ident.role, ident.name)


def test_identity_of_ignores_foreign_uris(tmp_path: Path) -> None:
    from edgesplit.security.tls import make_dev_ca

    dev = make_dev_ca(tmp_path, ["node-a"])  # a dev cert: DNS SANs only
    assert identity_of(x509.load_pem_x509_certificate(dev.certs["node-a"][0].read_bytes())) is None
