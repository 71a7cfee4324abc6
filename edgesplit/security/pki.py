"""A deployment's identities: one CA, one certificate per component, the control signing key.

``edgesplit pki init`` lays the material out one directory per component, so a
deployment mounts each component's directory into that component alone and no
process ever holds another's private key (docs/deployment.md, "Identities")::

    DIR/ca/ca.pem, ca.key                       the CA (keep it with the operator)
    DIR/services/<name>/ca.pem, tls.pem, tls.key
    DIR/services/broadcaster/control.ed25519.pem  the control signing key, only here
    DIR/nodes/<id>/ca.pem, tls.pem, tls.key, control.ed25519.pub.pem
    DIR/clients/<name>/ca.pem, tls.pem, tls.key   (and DIR/admins/<name> for operators)

Every certificate names its component in a URI SAN ``spiffe://edgesplit/<role>/<name>``
(what ``edgesplit.rpc.authz`` reads; a service's role is its kind) and as a DNS SAN (what a peer dialling it by
name verifies; the monitor also matches the node id against it). Files are
0600 and directories 0700: each belongs to the one component that reads it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgesplit.security.errors import KeyMaterialError
from edgesplit.security.identity import SPIFFE_PREFIX, Identity, Role
from edgesplit.security.keys import (
    generate_signing_key,
    key_id,
    load_signing_key,
    save_private_key,
    write_secret_file,
)
from edgesplit.security.tls import _load_ca, _new_ca, _new_leaf, _write_key

__all__ = [
    "CA_DIR",
    "DEFAULT_SERVICES",
    "SIGNER",
    "SPIFFE_PREFIX",
    "Component",
    "Identity",
    "Role",
    "add_component",
    "control_key_id",
    "identity_of",
    "init_pki",
]

# The roles of the authorisation table (edgesplit.rpc.authz.Role): a service's
# role is its kind, so its URI reads spiffe://edgesplit/monitor/monitor.
RoleName = Literal["monitor", "split-reviser", "broadcaster", "orchestrator", "gateway",
               "node", "client", "admin"]
DEFAULT_SERVICES: Final[tuple[RoleName, ...]] = (
    "monitor", "split-reviser", "broadcaster", "orchestrator", "gateway")
ROLE_DIRS: Final[dict[RoleName, str]] = {
    **{s: "services" for s in DEFAULT_SERVICES}, "node": "nodes", "client": "clients",
    "admin": "admins"}
SIGNER: Final = "broadcaster"  # the one service that signs assignments
CA_DIR: Final = "ca"
CA_CERT, CA_KEY = "ca.pem", "ca.key"
CERT, KEY = "tls.pem", "tls.key"
SIGNING_KEY, SIGNING_PUB = "control.ed25519.pem", "control.ed25519.pub.pem"
_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,62}")  # a DNS label or name
LEAF_DAYS: Final = 365
CA_DAYS: Final = 3650


@dataclass(frozen=True, slots=True)
class Component:
    """Where one component's material lies."""

    identity: Identity
    directory: Path

    @property
    def cert(self) -> Path:
        return self.directory / CERT

    @property
    def key(self) -> Path:
        return self.directory / KEY

    @property
    def ca(self) -> Path:
        return self.directory / CA_CERT


def identity_of(cert: x509.Certificate) -> Identity | None:
    """The edgesplit identity in ``cert``'s URI SAN, or None if it carries none."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
        role, _, name = uri.removeprefix(SPIFFE_PREFIX).partition("/")
        if uri.startswith(SPIFFE_PREFIX) and role in ROLE_DIRS and _NAME.fullmatch(name):
            return Identity(Role(role), name)
    return None


def _check_name(name: str) -> str:
    # It becomes a directory name, a DNS SAN and a URI path segment.
    if not _NAME.fullmatch(name):
        raise ValueError(f"unusable component name {name!r}: 1-63 of [A-Za-z0-9.-], "
                         "starting with a letter or digit")
    return name


def _sans(identity: Identity, hosts: Iterable[str]) -> list[x509.GeneralName]:
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(identity.uri)]
    if identity.role in ("client", "admin"):
        return sans  # they only call; no address to verify
    for host in dict.fromkeys([identity.name, *hosts, "localhost", "127.0.0.1"]):
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    return sans


def _secret_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


class _Ca:
    def __init__(self, root: Path, now: dt.datetime) -> None:
        d = root / CA_DIR
        self.cert_path, key_path = d / CA_CERT, d / CA_KEY
        self.now = now
        if self.cert_path.exists() or key_path.exists():
            self.cert, self.key = _load_ca(self.cert_path, key_path)
        else:
            self.cert, self.key = _new_ca(now, CA_DAYS, common_name="edgesplit CA")
            _secret_dir(d)
            _write_key(key_path, self.key)
            write_secret_file(self.cert_path, self.pem)

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


def _existing(root: Path) -> _Ca:
    if not (root / CA_DIR / CA_CERT).exists():
        raise KeyMaterialError(f"no CA under {root / CA_DIR}: run `edgesplit pki init {root}`")
    return _Ca(root, dt.datetime.now(dt.UTC))


def _issue(ca: _Ca, root: Path, identity: Identity, hosts: Sequence[str],
           replace: bool) -> Component | None:
    """Write one component's directory; None if it already exists and ``replace`` is off."""
    d = root / ROLE_DIRS[identity.role] / identity.name
    comp = Component(identity, d)
    if comp.cert.exists() and not replace:
        return None
    _secret_dir(d)
    cert, key = _new_leaf(identity.name, ca.cert, ca.key, ca.now, LEAF_DAYS,
                          _sans(identity, hosts))
    _write_key(comp.key, key)
    write_secret_file(comp.cert, cert.public_bytes(serialization.Encoding.PEM))
    write_secret_file(comp.ca, ca.pem)
    return comp


def _signing_key(root: Path) -> Ed25519PrivateKey:
    return load_signing_key(root / ROLE_DIRS[SIGNER] / SIGNER / SIGNING_KEY)


def _signing_public_pem(root: Path) -> bytes:
    return _signing_key(root).public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def _hand_out_public_key(root: Path, comp: Component) -> None:
    # Node agents verify assignments against the control public key.
    if comp.identity.role == "node":
        write_secret_file(comp.directory / SIGNING_PUB, _signing_public_pem(root))


def init_pki(directory: str | os.PathLike[str], *, nodes: Sequence[str] = (),
             clients: Sequence[str] = (), admins: Sequence[str] = (),
             services: Sequence[str] = DEFAULT_SERVICES, domains: Sequence[str] = (),
             now: dt.datetime | None = None) -> list[Component]:
    """Create (or complete) a deployment's PKI under ``directory``; returns what it wrote.

    Idempotent: an existing CA, signing key and component directories are kept,
    so an init job can run on every start. ``domains`` adds ``<name>.<domain>``
    DNS SANs to services and nodes (e.g. a Kubernetes Service's DNS suffix).
    """
    if SIGNER not in services:
        raise ValueError(f"services must include {SIGNER!r}: it holds the signing key")
    unknown = [s for s in services if s not in DEFAULT_SERVICES]
    if unknown:
        raise ValueError(f"unknown services {unknown}: choose from {list(DEFAULT_SERVICES)}")
    root = Path(directory)
    ca = _Ca(root, now or dt.datetime.now(dt.UTC))
    wanted = [Identity(s, s) for s in DEFAULT_SERVICES if s in services]
    wanted += [Identity("node", _check_name(n)) for n in nodes]
    wanted += [Identity("client", _check_name(c)) for c in clients]
    wanted += [Identity("admin", _check_name(a)) for a in admins]
    written = []
    for ident in wanted:
        hosts = [f"{ident.name}.{d}" for d in domains]
        comp = _issue(ca, root, ident, hosts, replace=False)
        if comp is not None:
            written.append(comp)
    signer_dir = _secret_dir(root / ROLE_DIRS[SIGNER] / SIGNER)
    if not (signer_dir / SIGNING_KEY).exists():
        save_private_key(generate_signing_key(), signer_dir / SIGNING_KEY)
    for comp in written:
        _hand_out_public_key(root, comp)
    return written


def add_component(directory: str | os.PathLike[str], identity: Identity, *,
                  hosts: Sequence[str] = (), replace: bool = False) -> Component:
    """Issue one more node or client (``pki add-node`` / ``add-client``) under the existing CA.

    ``replace`` reissues an existing component's key and certificate (rotation);
    without it an existing component is an error, so a typo cannot clobber one.
    """
    root = Path(directory)
    ca = _existing(root)
    comp = _issue(ca, root, Identity(identity.role, _check_name(identity.name)), hosts, replace)
    if comp is None:
        raise FileExistsError(f"{root / ROLE_DIRS[identity.role] / identity.name} exists; "
                              "pass --replace to reissue it")
    _hand_out_public_key(root, comp)
    return comp


def control_key_id(directory: str | os.PathLike[str]) -> str:
    """Key id of the control signing key (what `pki init` prints)."""
    return key_id(_signing_key(Path(directory)))
