"""Start services as real processes on 127.0.0.1 (tests, scenarios, demo)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass
class ServiceProcess:
    name: str
    proc: subprocess.Popen[bytes]
    address: str
    log: Path
    args: tuple[str, ...] = ()  # the extra arguments it was started with

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_service(name: str, tmp: Path, args: Sequence[str] = (),
                  env: dict[str, str] | None = None, timeout: float = 60.0,
                  listen: str = "127.0.0.1:0") -> ServiceProcess:
    """Start ``python -m services.NAME``; wait until it serves (its ready file)."""
    tmp.mkdir(parents=True, exist_ok=True)
    ready = tmp / f"{name}.{time.monotonic_ns()}.ready"
    log = tmp / f"{name}.log"
    cmd = [sys.executable, "-m", f"services.{name}", "--listen", listen,
           "--ready-file", str(ready), *args]
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    # The child runs in our working directory, so a relative path means the same
    # to both, from a checkout or from an installed package.
    with log.open("ab") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT,
                                env=full_env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready.exists():
            return ServiceProcess(name, proc, ready.read_text(), log, tuple(args))
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{name} did not start:\n{log.read_text()[-4000:]}")
