"""A Docker engine, a base image and a wheelhouse for the compose test, made on
this machine without a container registry (``make test-compose``).

* :class:`Engine` uses the engine that answers, or starts its own ``dockerd``
  (no iptables, no IP forwarding; data, exec root, socket and pid file under the
  checkout's ignored ``var/``) and later stops exactly that PID.
* :func:`base_image` bootstraps Debian bookworm (``debootstrap --variant=minbase``
  with python3, venv, pip and CA certificates from the mirror apt uses) and
  ``docker import``s it.
* :func:`wheelhouse` downloads the run-time wheels on the host (pip inside a
  container cannot verify the index's certificates here) and :class:`WheelServer`
  serves them on loopback to a host-network build.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VAR = ROOT / "var" / "compose"
BASE_TAG = "edgesplit-base:bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "python3-pip", "ca-certificates")


class EngineUnavailable(Exception):
    """No engine answers and none can be started here (the test skips)."""


def sh(cmd: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 900,
       check: bool = True, input: bytes | None = None, quiet: bool = False
       ) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(list(cmd), env=env, timeout=timeout, check=False, text=True,
                         capture_output=True, input=input.decode() if input else None)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} -> {out.returncode}\n"
                             f"{out.stdout[-4000:]}\n{out.stderr[-4000:]}")
    if not quiet and out.stdout.strip():
        print(out.stdout.rstrip()[-2000:])
    return out


def apt_mirror() -> str:
    """The Debian mirror apt is configured with (deb822 or one-line sources)."""
    for path in [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*")]:
        text = path.read_text() if path.is_file() else ""
        m = re.search(r"^URIs:\s*(\S+/debian)/?\s*$", text, re.MULTILINE) or \
            re.search(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+/debian)/?\s", text, re.MULTILINE)
        if m:
            return m.group(1)
    return "http://deb.debian.org/debian"


class Engine:
    """The Docker engine the test talks to: ``env`` carries DOCKER_HOST."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.dir = VAR / "engine"
        self.env = dict(os.environ)

    def _answers(self, env: dict[str, str]) -> bool:
        try:
            return sh(["docker", "version", "--format", "{{.Server.Version}}"], env=env,
                      timeout=20, check=False, quiet=True).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False

    def start(self) -> str:
        if shutil.which("docker") is None:
            raise EngineUnavailable("no docker client (apt-get install docker.io)")
        if self._answers(self.env):
            return "an engine already answers"
        if os.geteuid() != 0:
            raise EngineUnavailable("no engine answers and starting dockerd needs root")
        dockerd = shutil.which("dockerd")
        if dockerd is None:
            raise EngineUnavailable("no engine answers and there is no dockerd")
        self.dir.mkdir(parents=True, exist_ok=True)
        sock = self.dir / "docker.sock"
        self.env["DOCKER_HOST"] = f"unix://{sock}"
        if self._answers(self.env):
            return "our engine from an earlier run still answers"
        log = (self.dir / "dockerd.log").open("ab")
        self.proc = subprocess.Popen(
            [dockerd, "--iptables=false", "--ip-forward=false",
             f"--data-root={self.dir / 'data'}", f"--exec-root={self.dir / 'x'}",
             f"--host=unix://{sock}", f"--pidfile={self.dir / 'docker.pid'}"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while not self._answers(self.env):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise EngineUnavailable("dockerd did not start: "
                                        + (self.dir / "dockerd.log").read_text()[-1500:])
            time.sleep(0.5)
        return f"started dockerd pid {self.proc.pid}"

    def stop(self) -> None:
        """Stop the dockerd we started (that PID only) and unmount what it left."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
                  if line.split()[1].startswith(str(self.dir))]
        for mount in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", mount], check=False)


def image_id(engine: Engine, ref: str) -> str | None:
    out = sh(["docker", "image", "inspect", "-f", "{{.Id}}", ref], env=engine.env,
             check=False, quiet=True)
    return out.stdout.strip() if out.returncode == 0 else None


def base_image(engine: Engine) -> str:
    """A Debian bookworm base with python3 (debootstrap + docker import), once;
    returns its image ID (``sha256:...``). Imported, it has no registry digest:
    its ID, the digest of its configuration and so of its one layer, is what the
    build pins it by (``--build-arg BASE_IMAGE=<id>``)."""
    present = image_id(engine, BASE_TAG)
    if present:
        print(f"{BASE_TAG} present: {present}")
        return present
    if shutil.which("debootstrap") is None:
        raise EngineUnavailable("no debootstrap to make a base image (apt-get install "
                                "debootstrap), and no registry to pull one from")
    rootfs = VAR / "rootfs"
    done = rootfs / ".edgesplit-complete"
    if not done.exists():
        shutil.rmtree(rootfs, ignore_errors=True)
        sh(["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
            "bookworm", str(rootfs), apt_mirror()], timeout=1200, quiet=True)
        done.touch()
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "--exclude=./.edgesplit-complete",
                            "-c", "."], stdout=subprocess.PIPE)
    imported = subprocess.run(["docker", "import", "-", BASE_TAG], stdin=tar.stdout,
                              env=engine.env, capture_output=True, text=True, check=False)
    tar.wait()
    assert imported.returncode == 0 and tar.returncode == 0, imported.stderr
    made = image_id(engine, BASE_TAG)
    assert made, f"{BASE_TAG} missing after docker import"
    print(f"{BASE_TAG} imported from {rootfs}: {made}")
    return made


def runtime_requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return [*project["project"]["dependencies"], *project["build-system"]["requires"]]


def wheelhouse() -> Path:
    """Run-time wheels (and the build backend) for the image, downloaded on the host."""
    reqs = runtime_requirements()
    house = VAR / "wheelhouse"
    stamp = house / f".{hashlib.sha256(repr(reqs).encode()).hexdigest()[:16]}"
    if not stamp.exists():
        house.mkdir(parents=True, exist_ok=True)
        sh([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:",
            "-d", str(house), *reqs, "wheel"], timeout=1200, quiet=True)
        stamp.touch()
    return house


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def wheel_server(house: Path) -> Iterator[str]:
    """Serve ``house`` as a find-links page on 127.0.0.1; yields its URL.

    The URL is a build argument, and the classic builder keys a RUN step's cache
    on the build arguments it sees: a new port would reinstall every dependency.
    So the port of the last run is taken again when it is free (else port 0)."""
    handler = functools.partial(_Quiet, directory=str(house))
    remembered = VAR / "wheel-port"
    try:
        server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", int(remembered.read_text())), handler)
    except (OSError, ValueError):
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        remembered.write_text(str(server.server_address[1]))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
