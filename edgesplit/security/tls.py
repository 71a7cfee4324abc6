"""TLS material for mTLS between services: loading with clear errors, and a dev CA.

No grpc import here: ``edgesplit.rpc`` feeds the bytes to
``grpc.ssl_server_credentials`` / ``grpc.ssl_channel_credentials``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edgesplit.security.errors import KeyMaterialError
from edgesplit.security.keys import write_secret_file

__all__ = ["DevCa", "TlsMaterial", "load_tls_material", "make_dev_ca"]

_SPKI: Final = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


class TlsMaterial(NamedTuple):
    """PEM bytes in the order the arguments were given; unpacks as a 3-tuple."""

    cert_chain: bytes
    private_key: bytes
    root_ca: bytes


def _read(path: str | os.PathLike[str], what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise KeyMaterialError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc


def _certs(data: bytes, path: str | os.PathLike[str], what: str) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise KeyMaterialError(f"{path}: {what} is not PEM certificate(s) ({exc})") from exc


def load_tls_material(
    cert: str | os.PathLike[str], key: str | os.PathLike[str], ca: str | os.PathLike[str]
) -> TlsMaterial:
    """Read and sanity-check a certificate chain, its private key and the CA bundle.

    Checking here (parse, key matches certificate) turns a misconfiguration into
    one start-up error naming the file, instead of an opaque handshake failure
    on the first RPC.
    """
    cert_pem, key_pem, ca_pem = _read(cert, "certificate"), _read(key, "key"), _read(ca, "CA")
    leaf = _certs(cert_pem, cert, "certificate")[0]
    _certs(ca_pem, ca, "CA bundle")
    try:
        private = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyMaterialError(f"{key}: not an unencrypted PEM private key ({exc})") from exc
    if private.public_key().public_bytes(*_SPKI) != leaf.public_key().public_bytes(*_SPKI):
        raise KeyMaterialError(f"{key} does not match the certificate in {cert}")
    return TlsMaterial(cert_pem, key_pem, ca_pem)


@dataclass(frozen=True, slots=True)
class DevCa:
    """Paths written by make_dev_ca."""

    ca_cert: Path
    ca_key: Path
    certs: Mapping[str, tuple[Path, Path]]  # name -> (cert, key)

    def material(self, name: str) -> TlsMaterial:
        cert, key = self.certs[name]
        return load_tls_material(cert, key, self.ca_cert)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_secret_file(path, pem)


def _load_ca(
    cert_path: Path, key_path: Path
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise KeyMaterialError(f"{key_path}: dev CA key must be an EC key")
    return cert, key


def _new_ca(
    now: dt.datetime, days: int, common_name: str = "edgesplit dev CA"
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))  # tolerate clock skew between hosts
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _new_leaf(
    name: str,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    now: dt.datetime,
    days: int,
    sans: Sequence[x509.GeneralName] = (),
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A leaf for ``name``; ``sans`` replaces the default SANs (name, localhost, 127.0.0.1)."""
    key = ec.generate_private_key(ec.SECP256R1())
    sans = list(sans) or [
        x509.DNSName(name),
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        # Every service both serves and calls others, so one cert does both roles.
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def make_dev_ca(
    directory: str | os.PathLike[str],
    names: Sequence[str],
    *,
    now: dt.datetime | None = None,
    days: int = 365,
) -> DevCa:
    """Write ``ca.pem``/``ca.key`` and ``<name>.pem``/``<name>.key`` per name into ``directory``.

    Each leaf is signed by the CA, valid for server and client auth, with SANs
    ``name``, ``localhost`` and ``127.0.0.1``. An existing CA and existing leaf
    files are reused, so a test bed can call this on every start. Development only.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    now = now or dt.datetime.now(dt.UTC)
    ca_cert_path, ca_key_path = d / "ca.pem", d / "ca.key"
    reuse = ca_cert_path.exists() and ca_key_path.exists()
    if reuse:
        ca_cert, ca_key = _load_ca(ca_cert_path, ca_key_path)
    else:
        ca_cert, ca_key = _new_ca(now, days)
        _write_key(ca_key_path, ca_key)
        ca_cert_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    certs: dict[str, tuple[Path, Path]] = {}
    for name in names:
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"unusable certificate name {name!r}")  # it becomes a file name
        cert_path, key_path = d / f"{name}.pem", d / f"{name}.key"
        # Leaves left over from a previous CA would not verify: reissue them.
        if not (reuse and cert_path.exists() and key_path.exists()):
            cert, key = _new_leaf(name, ca_cert, ca_key, now, days)
            _write_key(key_path, key)
            cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        certs[name] = (cert_path, key_path)
    return DevCa(ca_cert_path, ca_key_path, certs)
