"""Every domain error answers with the status code it was meant to, whatever
its class is called (docs/architecture.md, "Errors")."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from edgesplit.errors import Code, DomainError
from edgesplit.rpc.errors import grpc_code, status_of

ROOT = Path(__file__).resolve().parents[2]

# The intended code of every DomainError subclass; a new class is added here
# on purpose, with the code its callers should see.
INTENDED: dict[str, Code] = {
    "edgesplit.errors.DomainError": Code.UNKNOWN,
    "edgesplit.errors.InvalidRequest": Code.INVALID_ARGUMENT,
    "edgesplit.errors.InsecureSetup": Code.FAILED_PRECONDITION,
    "edgesplit.errors.NotFound": Code.NOT_FOUND,
    "edgesplit.errors.Precondition": Code.FAILED_PRECONDITION,
    "edgesplit.errors.TooLarge": Code.RESOURCE_EXHAUSTED,
    "edgesplit.errors.Unavailable": Code.UNAVAILABLE,
    "edgesplit.core.cluster_config.ConfigError": Code.INVALID_ARGUMENT,
    "edgesplit.core.monitor.ReportRefused": Code.UNKNOWN,  # per instance, see below
    "edgesplit.core.route.RouteError": Code.INVALID_ARGUMENT,
    "edgesplit.model.errors.ModelError": Code.UNKNOWN,
    "edgesplit.model.errors.UnsupportedModel": Code.INVALID_ARGUMENT,
    "edgesplit.model.errors.ModelFileError": Code.FAILED_PRECONDITION,
    "edgesplit.model.errors.ShardDigestMismatch": Code.FAILED_PRECONDITION,
    "edgesplit.model.errors.SessionNotFound": Code.NOT_FOUND,
    "edgesplit.model.errors.PositionMismatch": Code.INVALID_ARGUMENT,
    "edgesplit.model.errors.BadFrame": Code.INVALID_ARGUMENT,
    "edgesplit.model.errors.BadFrameShape": Code.INVALID_ARGUMENT,
    "edgesplit.model.errors.BadFrameDtype": Code.INVALID_ARGUMENT,
    "edgesplit.model.errors.BadTokens": Code.INVALID_ARGUMENT,
    "edgesplit.model.errors.ContextTooLong": Code.RESOURCE_EXHAUSTED,
    "edgesplit.model.errors.NotServed": Code.FAILED_PRECONDITION,
    "edgesplit.rpc.convert.ConversionError": Code.INVALID_ARGUMENT,
    "edgesplit.security.errors.SecurityError": Code.PERMISSION_DENIED,
    "edgesplit.security.errors.BadSignature": Code.UNAUTHENTICATED,
    "edgesplit.security.errors.UnknownSigner": Code.PERMISSION_DENIED,
    "edgesplit.security.errors.WrongNode": Code.FAILED_PRECONDITION,
    "edgesplit.security.errors.StaleEpoch": Code.FAILED_PRECONDITION,
    "edgesplit.security.errors.ExpiredAssignment": Code.FAILED_PRECONDITION,
    "edgesplit.security.errors.FrameRejected": Code.PERMISSION_DENIED,  # per reason, below
    "services.node_agent.frame_guard.WrongSource": Code.PERMISSION_DENIED,
    "edgesplit.security.errors.KeyMaterialError": Code.FAILED_PRECONDITION,
    "edgesplit.security.errors.ShardDecryptError": Code.DATA_LOSS,
    "edgesplit.security.errors.KeyUnwrapError": Code.PERMISSION_DENIED,
    "services.broadcaster.nodes.NodeError": Code.FAILED_PRECONDITION,
    "services.broadcaster.servicer.NotAssigned": Code.PERMISSION_DENIED,
    "services.monitor.loaders.ConfigFileError": Code.INVALID_ARGUMENT,
    "services.node_agent.admission.Rejected": Code.INVALID_ARGUMENT,
    "services.node_agent.admission.QuotaExceeded": Code.RESOURCE_EXHAUSTED,
    "services.node_agent.queue.Overloaded": Code.RESOURCE_EXHAUSTED,
    "services.node_agent.shards.FetchFailed": Code.UNKNOWN,  # the registry's code, below
}

# Exceptions that never reach an RPC boundary, so they need no code.
NOT_AT_A_BOUNDARY = {
    "edgesplit.scenario.spec.ScenarioError",  # the scenario CLI reports it
    "services.node_agent.stage.StepFailed",  # the entry replays or fails the request
    "services.node_agent.entry._Retired",  # the entry replays on the newest route
    "services.gateway.errors.APIError",  # HTTP only: the gateway's handlers turn it into a reply
}


def _modules() -> list[str]:
    names = []
    for top in ("edgesplit", "services"):
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            if rel.parts[:2] == ("edgesplit", "v1") or rel.name == "__main__" and top == "edgesplit":
                continue  # generated code; the CLI's __main__ runs the CLI on import
            names.append(".".join(rel.parts).removesuffix(".__init__"))
    return names


def _exception_classes() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for name in _modules():
        module = importlib.import_module(name)
        for obj in vars(module).values():
            if inspect.isclass(obj) and issubclass(obj, BaseException) \
                    and obj.__module__ == name:
                found[f"{name}.{obj.__qualname__}"] = obj
    return found


def test_every_domain_error_class_has_its_intended_code() -> None:
    classes = _exception_classes()
    domain = {k: v for k, v in classes.items() if issubclass(v, DomainError)}
    assert set(domain) == set(INTENDED), "add new domain errors to INTENDED with their code"
    for name, cls in domain.items():
        assert cls.code is INTENDED[name], name
        assert grpc_code(cls.code) == grpc.StatusCode[INTENDED[name].name], name


def test_every_other_exception_is_known_not_to_cross_a_boundary() -> None:
    others = {k for k, v in _exception_classes().items() if not issubclass(v, DomainError)}
    assert others <= NOT_AT_A_BOUNDARY, (
        f"{sorted(others - NOT_AT_A_BOUNDARY)}: derive from edgesplit.errors.DomainError "
        "(with a code) or, if it never reaches a servicer, list it in NOT_AT_A_BOUNDARY")


def test_per_instance_codes() -> None:
    from edgesplit.core.monitor import RefuseReason, ReportRefused
    from edgesplit.core.types import NodeId
    from edgesplit.security.errors import FrameRejected
    from services.node_agent.shards import FetchFailed

    assert status_of(FrameRejected("bad_header")) == grpc.StatusCode.INVALID_ARGUMENT
    for reason in ("decrypt_failed", "replay", "misrouted"):
        assert status_of(FrameRejected(reason)) == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[arg-type]
    assert status_of(FrameRejected("stale_link")) == grpc.StatusCode.UNAVAILABLE  # say hello again
    assert status_of(FrameRejected("non_finite")) == grpc.StatusCode.INVALID_ARGUMENT
    assert status_of(FrameRejected("chunk_limit")) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert status_of(ReportRefused(NodeId("n"), RefuseReason.NOT_ENROLLED)) \
        == grpc.StatusCode.PERMISSION_DENIED
    assert status_of(ReportRefused(NodeId("n"), RefuseReason.MALFORMED)) \
        == grpc.StatusCode.INVALID_ARGUMENT
    assert status_of(FetchFailed("layer.0", grpc.StatusCode.DATA_LOSS, "x")) \
        == grpc.StatusCode.DATA_LOSS


def test_a_renamed_class_keeps_its_code() -> None:
    """The code travels with the class, not its name."""
    from edgesplit.security.errors import StaleEpoch

    renamed = type("EpochTooOld", (StaleEpoch,), {})
    assert status_of(renamed("x")) == grpc.StatusCode.FAILED_PRECONDITION


def test_a_code_must_be_a_code() -> None:
    with pytest.raises(TypeError):
        type("Bad", (DomainError,), {"code": "FAILED_PRECONDITION"})


def test_non_domain_errors_have_no_code() -> None:
    assert status_of(RuntimeError("bug")) is None  # the boundary answers INTERNAL


def test_every_code_has_a_grpc_twin() -> None:
    assert {grpc_code(c).name for c in Code} == {c.name for c in Code}


def test_errors_module_imports_neither_grpc_nor_torch() -> None:
    code = ("import sys, edgesplit.errors, edgesplit.model.errors, edgesplit.security.errors;"
            "bad = [m for m in ('grpc', 'torch') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
