"""FetchShard over mTLS: a node's certificate lets it fetch for itself only.

A real broadcaster server with mTLS on 127.0.0.1; certificates carry the
``spiffe://edgesplit/<role>/<name>`` URI SAN of edgesplit/rpc/authz.py.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edgesplit.rpc.server import create_server
from edgesplit.rpc.transport import Transport, TransportSettings
from edgesplit.security.keys import ensure_dev_keys
from edgesplit.v1 import broadcaster_pb2 as bpb
from edgesplit.v1 import broadcaster_pb2_grpc as bpb_grpc
from services.broadcaster import __main__ as broadcaster_main
from services.broadcaster.config import BroadcasterConfig
from tests.service.broadcaster_cluster import fake_shard_dir


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
    path.with_suffix(".pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.with_suffix(".key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))


def make_pki(root: Path, identities: list[str]) -> Path:
    """A CA and one leaf per ``role/name`` (URI SAN + 127.0.0.1); returns the CA file."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("test ca")).issuer_name(_name("test ca"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    _write(root / "ca", ca, ca_key)
    for ident in identities:
        key = ec.generate_private_key(ec.SECP256R1())
        sans = [x509.UniformResourceIdentifier(f"spiffe://edgesplit/{ident}"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        cert = (x509.CertificateBuilder().subject_name(_name(ident.replace("/", "-")))
                .issuer_name(ca.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(hours=1))
                .not_valid_after(now + dt.timedelta(1))
                .add_extension(x509.SubjectAlternativeName(sans), critical=False)
                .sign(ca_key, hashes.SHA256()))
        _write(root / ident.replace("/", "-"), cert, key)
    return root / "ca.pem"


@pytest.fixture
async def secure_broadcaster(tmp_path: Path) -> AsyncIterator[tuple[str, Path, str]]:
    _, shards = fake_shard_dir(tmp_path / "src")
    ca = make_pki(tmp_path, ["broadcaster/broadcaster", "node/node-1", "node/node-2"])
    ensure_dev_keys(tmp_path / "keys", "control")
    conf = BroadcasterConfig(state_dir=str(tmp_path / "bc"), shard_dir=str(tmp_path / "src"),
                             signing_key=str(tmp_path / "keys" / "control.ed25519.pem"),
                             tls_ca=str(ca), tls_cert=str(tmp_path / "broadcaster-broadcaster.pem"),
                             tls_key=str(tmp_path / "broadcaster-broadcaster.key"))
    rollout, regs = broadcaster_main.build(conf)
    sha = hashlib.sha256(shards["embed"]).hexdigest()
    # node-1 holds the shard in the committed epoch (what a rollout would grant).
    rollout._granted = {"node-1": frozenset({sha})}
    server = await create_server(conf, regs)
    yield f"127.0.0.1:{server.port}", tmp_path, sha
    await rollout.clients.close()
    await server.server.stop(None)


async def _fetch(address: str, root: Path, cert: str, node_id: str, sha: str) -> int:
    transport = Transport(TransportSettings(str(root / "ca.pem"), str(root / f"{cert}.pem"),
                                            str(root / f"{cert}.key")))
    async with transport.aio_channel(address) as ch:
        call = bpb_grpc.BroadcasterStub(ch).FetchShard(
            bpb.FetchShardRequest(sha256=sha, node_id=node_id), timeout=10)
        return sum([len(c.data) async for c in call])


async def test_a_node_fetches_its_own_shards(
        secure_broadcaster: tuple[str, Path, str]) -> None:
    address, root, sha = secure_broadcaster
    assert await _fetch(address, root, "node-node-1", "node-1", sha) > 0


async def test_a_node_cannot_fetch_in_another_nodes_name(
        secure_broadcaster: tuple[str, Path, str]) -> None:
    address, root, sha = secure_broadcaster
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _fetch(address, root, "node-node-2", "node-1", sha)  # node-2 posing as node-1
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "spiffe://edgesplit/node/node-2" in (err.value.details() or "")
