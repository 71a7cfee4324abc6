"""Every channel comes from edgesplit/rpc/transport.py (docs/architecture.md,
"Transport"): nothing else may open one, so none can skip the component's
certificate, the message limits or the retry policy."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TRANSPORT = ROOT / "edgesplit" / "rpc" / "transport.py"
CHANNEL_FACTORIES = {"insecure_channel", "secure_channel"}
# Deprecated helpers kept only so unported code still imports (edgesplit/rpc/client.py).
SHIMS = {"aio_channel", "sync_channel", "channel_credentials", "call_with_retry"}


def _sources() -> list[Path]:
    files = []
    for top in ("edgesplit", "services", "tests"):
        for path in sorted((ROOT / top).rglob("*.py")):
            if path.relative_to(ROOT).parts[:2] != ("edgesplit", "v1"):  # generated
                files.append(path)
    return files


def channel_calls(source: str) -> list[tuple[int, str]]:
    """(line, name) of every ``grpc[.aio].insecure_channel``/``secure_channel`` use,
    and of every import of those names from grpc."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr in CHANNEL_FACTORIES:
            found.append((node.lineno, ast.unparse(node)))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("grpc"):
            found += [(node.lineno, f"from {node.module} import {a.name}")
                      for a in node.names if a.name in CHANNEL_FACTORIES]
    return found


def shim_imports(source: str) -> list[tuple[int, str]]:
    return [(node.lineno, a.name) for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.ImportFrom) and node.module == "edgesplit.rpc.client"
            for a in node.names if a.name in SHIMS]


def test_only_the_transport_opens_channels() -> None:
    offenders = [f"{p.relative_to(ROOT)}:{line}: {what}"
                 for p in _sources() if p != TRANSPORT
                 for line, what in channel_calls(p.read_text())]
    assert not offenders, "open channels with edgesplit.rpc.transport.Transport:\n" + \
        "\n".join(offenders)


def test_nobody_uses_the_deprecated_client_helpers() -> None:
    offenders = [f"{p.relative_to(ROOT)}:{line}: {what}"
                 for p in _sources() if p.parent != TRANSPORT.parent
                 for line, what in shim_imports(p.read_text())]
    assert not offenders, "use a Transport built once per component:\n" + "\n".join(offenders)


def test_the_rule_sees_every_spelling() -> None:
    """The scan itself: each way of opening a channel is caught."""
    spellings = [
        "import grpc\ngrpc.insecure_channel('a')",
        "import grpc\ngrpc.secure_channel('a', c)",
        "import grpc\ngrpc.aio.insecure_channel('a')",
        "import grpc\ngrpc.aio.secure_channel('a', c)",
        "from grpc import aio\naio.insecure_channel('a')",
        "from grpc.aio import insecure_channel",
        "from grpc import secure_channel as s",
    ]
    for source in spellings:
        assert channel_calls(source), source
    assert not channel_calls("transport.aio_channel('a')\ngrpc.ssl_channel_credentials()")
    assert shim_imports("from edgesplit.rpc.client import aio_channel")
    assert TRANSPORT.exists() and channel_calls(TRANSPORT.read_text())
