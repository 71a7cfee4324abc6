"""The authorisation table covers every RPC, and its decisions."""

from __future__ import annotations

import importlib
import pkgutil

import grpc
import pytest

import edgesplit.v1
from edgesplit.rpc.authz import POLICY, Identity, Role, decide, identities


def _all_methods() -> set[str]:
    methods = set()
    for mod in pkgutil.iter_modules(edgesplit.v1.__path__):
        if not mod.name.endswith("_pb2"):
            continue
        module = importlib.import_module(f"edgesplit.v1.{mod.name}")
        for service in module.DESCRIPTOR.services_by_name.values():
            for m in service.methods:
                methods.add(f"/{service.full_name}/{m.name}")
    return methods


def test_every_rpc_has_a_row() -> None:
    missing = _all_methods() - set(POLICY)
    assert not missing, f"RPCs without a row in the authorisation table: {sorted(missing)}"


@pytest.mark.parametrize("method, role", [
    ("/edgesplit.v1.Broadcaster/Apply", Role.ORCHESTRATOR),
    ("/edgesplit.v1.NodeAgent/Prepare", Role.BROADCASTER),
    ("/edgesplit.v1.NodeAgent/Commit", Role.BROADCASTER),
    ("/edgesplit.v1.Inference/Generate", Role.CLIENT),
    ("/edgesplit.v1.Monitor/Report", Role.NODE),
])
def test_the_named_role_may_call(method: str, role: Role) -> None:
    assert decide(method, (Identity(role, "x"),)) is None


@pytest.mark.parametrize("method", sorted(m for m, roles in POLICY.items()
                                          if roles != frozenset(Role)))
def test_no_certificate_is_unauthenticated(method: str) -> None:
    assert decide(method, ()) == (grpc.StatusCode.UNAUTHENTICATED, "no_certificate")


def test_wrong_role_and_unlisted_method_are_denied() -> None:
    client = (Identity(Role.CLIENT, "app"),)
    assert decide("/edgesplit.v1.Broadcaster/Apply", client) == (
        grpc.StatusCode.PERMISSION_DENIED, "wrong_role")
    assert decide("/edgesplit.v1.NodeAgent/Commit", (Identity(Role.NODE, "node-1"),)) == (
        grpc.StatusCode.PERMISSION_DENIED, "wrong_role")
    assert decide("/edgesplit.v1.Nope/New", client) == (
        grpc.StatusCode.PERMISSION_DENIED, "unlisted_method")
    assert decide("/edgesplit.v1.Broadcaster/Apply", client, enforce=False) is None


def test_identity_parsing_takes_only_edgesplit_uris() -> None:
    auth = {"x509_subject_alternative_name": [
        b"localhost", b"spiffe://edgesplit/node/node-1", b"spiffe://other/node/x",
        b"spiffe://edgesplit/bogus/x", b"spiffe://edgesplit/node/a/b", b"spiffe://edgesplit/node/"]}
    assert identities(auth) == (Identity(Role.NODE, "node-1"),)
    assert Identity(Role.GATEWAY, "gw").uri == "spiffe://edgesplit/gateway/gw"
