"""Start a gateway process beside a local test bed (``edgesplit testbed up``,
the scenario runner behind ``edgesplit demo``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from edgesplit.bedpki import LocalPki
from edgesplit.procs import ServiceProcess, start_service


def start_gateway(base: Path, model_dir: str | Path, *, monitor: str = "",
                  entries: Mapping[str, str] | None = None, listen: str = "127.0.0.1:0",
                  extra_args: tuple[str, ...] = (), pki: LocalPki | None = None,
                  insecure: bool = False) -> ServiceProcess:
    """A gateway on ``listen`` whose entries come from ``monitor`` (or are the
    fixed ``entries``: node id -> address); its log is ``base/gateway.log``.
    It calls them with its own certificate from ``pki`` (plaintext: ``insecure``)."""
    args = ["--model-dir", str(model_dir), "--log-level", "WARNING"]
    if monitor:
        args += ["--monitor", monitor]
    if entries:
        args += ["--entries", ",".join(entries),
                 "--entry-addresses", ",".join(f"{n}={a}" for n, a in entries.items())]
    return start_service("gateway", base, [*args, *extra_args], listen=listen, pki=pki,
                         insecure=insecure)
