"""The one launcher for services as real processes on 127.0.0.1 (test bed,
tests, scenarios, demo).

A service is ``python -m services.NAME --listen ADDR --ready-file FILE ...``;
it is ready once it has written its bound address to the ready file. A
restart runs the same command again on the *same* address, so peers and
plans that name it reach the new process. Each service gets its own
certificate from a :class:`~edgesplit.bedpki.LocalPki` (by default one beside
its logs); plaintext only when asked for with ``insecure``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgesplit.bedpki import PKI_DIR, SERVICE_ROLES, LocalPki, transport_for
from edgesplit.rpc.transport import Transport
from edgesplit.security.identity import Identity

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Launch:
    """How to start one service process (kept to start it again)."""

    name: str
    cmd: list[str]
    env: dict[str, str]
    ready: Path
    log: Path
    detach: bool = False  # own session: outlives the caller (``edgesplit testbed up``)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "cmd": self.cmd, "env": self.env, "ready": str(self.ready),
                "log": str(self.log), "detach": self.detach}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Launch:
        return cls(raw["name"], list(raw["cmd"]), dict(raw["env"]), Path(raw["ready"]),
                   Path(raw["log"]), bool(raw["detach"]))

    def with_listen(self, address: str) -> Launch:
        cmd = list(self.cmd)
        cmd[cmd.index("--listen") + 1] = address
        return Launch(self.name, cmd, self.env, self.ready, self.log, self.detach)

    def popen(self) -> subprocess.Popen[bytes]:
        self.ready.unlink(missing_ok=True)
        with self.log.open("ab") as fh:
            return subprocess.Popen(self.cmd, stdout=fh, stderr=subprocess.STDOUT,
                                    env=self.env, start_new_session=self.detach)


@dataclass
class ServiceProcess:
    launch: Launch
    proc: subprocess.Popen[bytes]
    address: str
    args: tuple[str, ...] = field(default=())  # the extra arguments it was started with
    pki: LocalPki | None = None  # where its certificate came from; None: plaintext

    def transport(self, identity: Identity) -> Transport:
        """A channel factory to this service (and its peers) as ``identity``."""
        return transport_for(self.pki, identity)

    @property
    def name(self) -> str:
        return self.launch.name

    @property
    def log(self) -> Path:
        return self.launch.log

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL: a crash, no goodbye."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self, timeout: float = 60.0) -> None:
        """Start it again with the same command on the same address."""
        self.stop()
        again = relaunch(self.launch, self.address, timeout)
        self.proc, self.address = again.proc, again.address


def identity_of(name: str, args: Sequence[str]) -> Identity:
    """Who ``python -m services.NAME args`` is (a node agent: its ``--node-id``)."""
    role = SERVICE_ROLES[name]
    if name == "node_agent":
        given = list(args)
        return Identity(role, given[given.index("--node-id") + 1] if "--node-id" in given
                        else "node-0")  # the agent's own default id
    return Identity(role, role.value)


def credentials(name: str, base: Path, args: Sequence[str], pki: LocalPki | None,
                insecure: bool) -> tuple[list[str], LocalPki | None]:
    """The flags that give a service its certificate, and the PKI they came from.

    ``insecure``: ``--insecure`` (plaintext, which the servers allow on loopback
    only); TLS flags already in ``args``: nothing more; else the service's own
    directory in ``pki`` (default: ``base/pki``).
    """
    if insecure:
        return ["--insecure"], None
    pki = pki or LocalPki(base / PKI_DIR)
    if any(a.startswith("--tls-") for a in args):
        return [], pki
    return pki.args(identity_of(name, args)), pki


def prepare(name: str, base: Path, args: Sequence[str] = (), env: dict[str, str] | None = None,
            listen: str = "127.0.0.1:0", log_name: str = "", detach: bool = False,
            tls: Sequence[str] = ()) -> Launch:
    """How to start ``services.NAME``; ``tls``: its credential flags (:func:`credentials`)."""
    base.mkdir(parents=True, exist_ok=True)
    log_name = log_name or name
    ready = base / f"{log_name}.{time.monotonic_ns()}.ready"
    cmd = [sys.executable, "-m", f"services.{name}", "--listen", listen,
           "--ready-file", str(ready), *tls, *args]
    return Launch(name, cmd, {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}, ready,
                  base / f"{log_name}.log", detach)


def wait_ready(started: Sequence[tuple[Launch, subprocess.Popen[bytes]]],
               timeout: float) -> list[str]:
    """The address of each once all are ready; kills them all if one is not."""
    deadline = time.monotonic() + timeout
    addresses = []
    for launch, proc in started:
        while not launch.ready.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                for _, p in started:
                    p.kill()
                raise RuntimeError(f"{launch.name} did not start; see {launch.log}:\n"
                                   f"{launch.log.read_text()[-4000:]}")
            time.sleep(0.05)
        addresses.append(launch.ready.read_text())
    return addresses


def start_service(name: str, tmp: Path, args: Sequence[str] = (),
                  env: dict[str, str] | None = None, timeout: float = 60.0,
                  listen: str = "127.0.0.1:0", *, pki: LocalPki | None = None,
                  insecure: bool = False) -> ServiceProcess:
    """Start ``python -m services.NAME``; wait until it serves (its ready file).
    It presents its own certificate from ``pki`` (default: ``tmp/pki``), or
    serves plaintext with ``insecure``."""
    tls, pki = credentials(name, tmp, args, pki, insecure)
    launch = prepare(name, tmp, args, env, listen, tls=tls)
    proc = launch.popen()
    (address,) = wait_ready([(launch, proc)], timeout)
    return ServiceProcess(launch, proc, address, tuple(args), pki)


def relaunch(launch: Launch, address: str, timeout: float = 60.0,
             attempts: int = 20) -> ServiceProcess:
    """Start ``launch`` again on ``address``. The port is retried briefly: the
    killed process's socket may take a moment to be released."""
    again = launch.with_listen(address)
    for attempt in range(attempts):
        proc = again.popen()
        try:
            (bound,) = wait_ready([(again, proc)], timeout)
            return ServiceProcess(again, proc, bound)  # the caller keeps its pki
        except RuntimeError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.25)
    raise AssertionError("unreachable")


def terminate(pid: int, timeout_s: float = 10.0) -> None:
    """SIGTERM ``pid`` (not necessarily our child), SIGKILL after ``timeout_s``."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done == pid:
                return
        except ChildProcessError:
            pass  # not our child (a later CLI call): poll with kill(0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
