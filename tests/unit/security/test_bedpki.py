"""The test bed's certificates: one per process, naming what the authorisation
table expects, and found again by the CLI from the bed's state directory."""

from __future__ import annotations

import json
from pathlib import Path

from cryptography import x509

from edgesplit.bedpki import ADMIN, CLIENT, PKI_DIR, LocalPki, discovered
from edgesplit.procs import credentials
from edgesplit.security.identity import Identity, Role
from edgesplit.security.pki import identity_of


def _flags(args: list[str]) -> dict[str, str]:
    return dict(zip(args[::2], args[1::2], strict=True))


def _named(cert: str) -> Identity | None:
    return identity_of(x509.load_pem_x509_certificate(Path(cert).read_bytes()))


def test_each_service_gets_its_own_certificate_naming_it(tmp_path: Path) -> None:
    node, _ = credentials("node_agent", tmp_path, ["--node-id", "edge-7"], None, False)
    orch, pki = credentials("orchestrator", tmp_path, [], None, False)
    assert pki is not None and pki.root == tmp_path / PKI_DIR
    n, o = _flags(node), _flags(orch)
    assert _named(n["--tls-cert"]) == Identity(Role.NODE, "edge-7")
    assert _named(o["--tls-cert"]) == Identity(Role.ORCHESTRATOR, "orchestrator")
    assert n["--tls-key"] != o["--tls-key"] and n["--tls-ca"] != o["--tls-ca"]  # own dirs
    assert Path(n["--tls-ca"]).read_bytes() == Path(o["--tls-ca"]).read_bytes()  # one CA


def test_insecure_and_given_flags_are_left_alone(tmp_path: Path) -> None:
    assert credentials("monitor", tmp_path, [], None, True) == (["--insecure"], None)
    flags, pki = credentials("monitor", tmp_path, ["--tls-cert", "x"], None, False)
    assert flags == [] and pki is not None
    assert not (tmp_path / PKI_DIR).exists()  # nothing issued for a service that brought its own


def test_the_cli_finds_the_beds_identities_or_none(tmp_path: Path) -> None:
    pki = LocalPki(tmp_path / "elsewhere")
    assert discovered(tmp_path, CLIENT) == ""  # no bed, no PKI
    pki.component(CLIENT)
    (tmp_path / "testbed.json").write_text(json.dumps({"pki": str(pki.root)}))
    assert discovered(tmp_path, CLIENT) == str(pki.directory(CLIENT))
    assert discovered(tmp_path, ADMIN) == ""  # not issued
    (tmp_path / "testbed.json").write_text(json.dumps({"pki": ""}))  # an insecure bed
    assert discovered(tmp_path, CLIENT) == ""
