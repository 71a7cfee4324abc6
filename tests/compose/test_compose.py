"""``docker compose up`` serves, on a real Docker engine (``make test-compose``).

One run, phase by phase (each phase's time is printed and written to
var/compose/phases.json): an engine (started here if none answers), a base
image bootstrapped from Debian packages, the image built from a loopback
wheelhouse, ``docker-compose up`` with every container's health checked here
(compose v1 has no ``--wait``), a first plan from the orchestrator, tokens
streamed to the client container and to the host through the published port,
a node on the route killed mid-generation with the greedy tokens identical to
a fault-free run, broadcaster and orchestrator restarted with the epoch kept,
then ``down -v``. Every gRPC channel is mTLS: the host talks to the entry with
the client certificate init wrote to var/compose/client, to the orchestrator
with the admin one in var/compose/admin, and to the gateway's OpenAI API with
the API key init wrote beside the client certificate. Network targets:
127.0.0.1 and the compose network's own containers only.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from edgesplit.rpc.transport import Transport, TransportSettings
from edgesplit.v1 import inference_pb2, inference_pb2_grpc, orchestrator_pb2, orchestrator_pb2_grpc
from tests.compose.engine import (
    ROOT,
    VAR,
    Engine,
    EngineUnavailable,
    base_image,
    sh,
    wheel_server,
    wheelhouse,
)

pytestmark = [pytest.mark.slow, pytest.mark.compose]

PROJECT = "edgesplit-ct"
IMAGE = "edgesplit:compose-test"
COMPOSE = ROOT / "deploy" / "compose.yaml"
RUNNING = ("monitor", "split-reviser", "broadcaster", "orchestrator", "node-a", "node-b",
           "node-c", "gateway")
ONE_SHOT = ("init", "conditions")  # jobs that must have exited 0

PORTS = ("EDGESPLIT_ENTRY_PORT", "EDGESPLIT_ORCHESTRATOR_PORT", "EDGESPLIT_GATEWAY_PORT")
# Greedy on the seeded tiny model, "Hello" runs 1184 tokens before its eos
# ("the quick brown fox": 145), so the generation a node dies in has room.
PROMPT = "Hello"
LONG = 1100  # tokens of the generation a node dies in
KILL_AT = 100  # the token after which it dies


class Phases:
    def __init__(self) -> None:
        self.times: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        print(f"\n== {name} ...", flush=True)
        start = time.monotonic()
        try:
            yield
        finally:
            self.times[name] = round(time.monotonic() - start, 1)
            print(f"== {name}: {self.times[name]:.1f} s", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Stack:
    """The compose project under test."""

    def __init__(self, engine: Engine) -> None:
        self.ports: dict[str, int] = {}
        self.client_dir, self.admin_dir = VAR / "client", VAR / "admin"
        for d in (self.client_dir, self.admin_dir):  # init writes them afresh
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir(parents=True)
        self.env = {**engine.env, "EDGESPLIT_IMAGE": IMAGE,
                    "EDGESPLIT_PUBLISH_ADDR": "127.0.0.1",
                    "EDGESPLIT_CLIENT_DIR": str(self.client_dir),
                    "EDGESPLIT_ADMIN_DIR": str(self.admin_dir),
                    "COMPOSE_PROJECT_NAME": PROJECT}
        for name in ("EDGESPLIT_MODEL_DIR", "EDGESPLIT_SCENARIO", "EDGESPLIT_SCENARIO_DIR"):
            self.env.pop(name, None)

    @staticmethod
    def _mtls(directory: Path) -> Transport:
        return Transport(TransportSettings(str(directory / "ca.pem"), str(directory / "tls.pem"),
                                           str(directory / "tls.key")))

    @property
    def port(self) -> int:
        return self.ports["EDGESPLIT_ENTRY_PORT"]

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['EDGESPLIT_GATEWAY_PORT']}"

    def compose(self, *args: str, timeout: float = 600, check: bool = True,
                quiet: bool = False) -> Any:
        return sh(["docker-compose", "-f", str(COMPOSE), "-p", PROJECT, *args], env=self.env,
                  timeout=timeout, check=check, quiet=quiet)

    def up(self) -> None:
        """``up -d`` publishing the entry on a port free right now (another process on
        this machine may take one chosen earlier: then once more on another)."""
        for attempt in range(2):
            self.ports = {name: free_port() for name in PORTS}
            self.env.update({name: str(port) for name, port in self.ports.items()})
            out = self.compose("up", "-d", "--no-build", check=False, quiet=True)
            if out.returncode == 0:
                return
            taken = "already in use" in out.stderr or "already allocated" in out.stderr
            assert taken and attempt == 0, out.stderr[-4000:]
            self.compose("down", check=False, quiet=True)

    def container(self, service: str) -> str:
        cid: str = self.compose("ps", "-q", service, quiet=True).stdout.strip()
        assert cid, f"no container for {service}"
        return cid

    def inspect(self, service: str) -> dict[str, Any]:
        out = sh(["docker", "inspect", self.container(service)], env=self.env, quiet=True)
        data: dict[str, Any] = json.loads(out.stdout)[0]
        return data

    def address(self, service: str) -> str:
        nets = self.inspect(service)["NetworkSettings"]["Networks"]
        return f"{next(iter(nets.values()))['IPAddress']}:50051"

    def logs(self) -> str:
        out = self.compose("logs", "--no-color", "--tail=40", check=False, quiet=True)
        return str(out.stdout)[-12000:]

    def wait_healthy(self, services: tuple[str, ...], timeout_s: float = 480) -> None:
        """Every container running and healthy, none restarted; init exited 0."""
        deadline = time.monotonic() + timeout_s
        while True:
            states = {s: self.inspect(s)["State"] for s in services}
            bad = {s: st for s, st in states.items()
                   if st["Status"] in ("exited", "dead") or st.get("Restarting")}
            assert not bad, f"not running: {sorted(bad)}\n{self.logs()}"
            restarted = {s: self.inspect(s)["RestartCount"] for s in services}
            assert not any(restarted.values()), f"restarted: {restarted}\n{self.logs()}"
            waiting = [s for s, st in states.items() if st["Health"]["Status"] != "healthy"]
            if not waiting:
                return
            assert time.monotonic() < deadline, f"not healthy: {waiting}\n{self.logs()}"
            time.sleep(1)

    def exited_ok(self, service: str) -> None:
        state = self.inspect(service)["State"]
        assert state["Status"] == "exited" and state["ExitCode"] == 0, (service, self.logs())

    def status(self) -> orchestrator_pb2.StatusResponse:
        """The orchestrator's status, as the host's operator (admin certificate)."""
        target = f"127.0.0.1:{self.ports['EDGESPLIT_ORCHESTRATOR_PORT']}"
        with self._mtls(self.admin_dir).sync_channel(target) as ch:
            reply: orchestrator_pb2.StatusResponse = orchestrator_pb2_grpc.OrchestratorStub(
                ch).Status(orchestrator_pb2.StatusRequest(), timeout=10)
            return reply

    def generate(self, n: int, on_token: Any = None, timeout_s: float = 300
                 ) -> list[inference_pb2.GenerateResponse]:
        req = inference_pb2.GenerateRequest(prompt=PROMPT, max_new_tokens=n)
        replies = []
        with self._mtls(self.client_dir).sync_channel(f"127.0.0.1:{self.port}") as ch:
            for r in inference_pb2_grpc.InferenceStub(ch).Generate(req, timeout=timeout_s):
                replies.append(r)
                if on_token is not None:
                    on_token(r)
        return replies


def wait_first_plan(stack: Stack, timeout_s: float = 420) -> orchestrator_pb2.StatusResponse:
    deadline = time.monotonic() + timeout_s
    while True:
        status = stack.status()
        if status.plan.epoch > 0:
            return status
        assert time.monotonic() < deadline, f"no plan after {timeout_s}s\n{stack.logs()}"
        time.sleep(1)


def route_nodes(status: orchestrator_pb2.StatusResponse) -> list[str]:
    (route,) = status.plan.routes
    return [s.node_id for s in route.segments]


def gateway_completion(stack: Stack, max_tokens: int) -> Any:
    """A completion through the gateway's OpenAI API from the host (the official
    client, the API key init wrote beside the host's client certificate)."""
    import openai

    key = (stack.client_dir / "api-key").read_text().strip()
    client = openai.OpenAI(base_url=f"{stack.gateway_url}/v1", api_key=key, max_retries=0,
                           timeout=120)
    return client.completions.create(model="edgesplit", prompt=PROMPT, max_tokens=max_tokens,
                                     temperature=0)


def scrape(stack: Stack, service: str) -> str:
    host = stack.address(service).rsplit(":", 1)[0]
    port = 8080 if service == "gateway" else 9400  # the gateway's API port serves it
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10) as resp:
        return str(resp.read().decode())


def sample(text: str, name: str) -> float:
    """The value of an unlabelled series in an exposition (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def wait_route_without(stack: Stack, victim: str, timeout_s: float = 120
                       ) -> orchestrator_pb2.StatusResponse:
    deadline = time.monotonic() + timeout_s
    while True:
        status = stack.status()
        if victim not in route_nodes(status):
            return status
        assert time.monotonic() < deadline, f"{victim} still routed\n{stack.logs()}"
        time.sleep(1)


def check_metrics(stack: Stack, services: tuple[str, ...]) -> None:
    """Every service's /metrics after traffic passes ``promtool check metrics``."""
    promtool = shutil.which("promtool")
    if promtool is None:
        print("promtool not installed (apt-get install prometheus): skipped")
        return
    for service in services:
        text = scrape(stack, service)
        assert "edgesplit_build_info{" in text, service
        out = sh([promtool, "check", "metrics"], input=text.encode(), check=False, quiet=True)
        assert out.returncode == 0, f"{service}: {out.stdout}{out.stderr}"


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose not installed (apt-get install docker-compose)")
    eng = Engine()
    try:
        print(f"\nengine: {eng.start()}")
    except EngineUnavailable as exc:
        pytest.skip(f"no Docker engine: {exc}")
    try:
        yield eng
    finally:
        eng.stop()


def test_compose_up_serves_survives_a_node_and_keeps_its_epoch(engine: Engine) -> None:
    phases = Phases()
    stack = Stack(engine)
    try:
        with phases("base image"):
            base = base_image(engine)
        with phases("wheelhouse"):
            house = wheelhouse()
        with phases("image build"), wheel_server(house) as url:
            sh(["docker", "build", "--network=host", "-f", "deploy/Dockerfile", "-t", IMAGE,
                "--build-arg", f"BASE_IMAGE={base}",  # pinned by its ID (digest)
                "--build-arg", "PIP_NO_INDEX=1", "--build-arg", f"PIP_FIND_LINKS={url}",
                "--build-arg", f"REVISION={os.environ.get('EDGESPLIT_REVISION', 'test')}",
                str(ROOT)], env={**engine.env, "DOCKER_BUILDKIT": "0"}, timeout=1800,
               quiet=True)
            user = sh(["docker", "image", "inspect", "-f", "{{.Config.User}}", IMAGE],
                      env=engine.env, quiet=True).stdout.strip()
            assert user == "10001:10001"
            labels = json.loads(sh(["docker", "image", "inspect", "-f",
                                    "{{json .Config.Labels}}", IMAGE], env=engine.env,
                                   quiet=True).stdout)
            assert labels["org.opencontainers.image.base.name"] == base
        with phases("up to all healthy"):
            stack.up()
            stack.wait_healthy(RUNNING)
            stack.exited_ok("init")
            for name in ("ca.pem", "tls.pem", "tls.key", "api-key"):
                assert (stack.client_dir / name).is_file(), name
            assert not (stack.client_dir / "ca.key").exists()
        with phases("first plan"):
            status = wait_first_plan(stack)
            nodes = route_nodes(status)
            print(f"epoch {status.plan.epoch}: route {nodes}")
            assert nodes[0] == "node-a" and len(set(nodes)) >= 2, "the plan must split"
        with phases("generate from the client container"):
            out = stack.compose("run", "--rm", "client", "edgesplit", "generate", "Hello",
                                "--max-new-tokens", "16", quiet=True)
            assert out.stdout.strip(), out.stderr
            assert "tokens, finish=" in out.stderr, out.stderr
        with phases("generate from the host"):
            seen: list[float] = []
            replies = stack.generate(32, on_token=lambda r: seen.append(time.monotonic()))
            assert len(replies) > 1 and seen[-1] > seen[0]  # streamed, not one batch
            stack.exited_ok("conditions")  # no scenario: it set nothing and exited
        with phases("completion through the gateway from the host"):
            done = gateway_completion(stack, 16)
            assert done.usage.completion_tokens == 16, done
            assert done.choices[0].text == "".join(r.text for r in replies[:16])
        with phases("promtool check metrics"):
            check_metrics(stack, RUNNING)
        with phases("fault-free reference"):
            reference = [r.token_id for r in stack.generate(LONG)]
            assert len(reference) == LONG, "the tiny model stopped early: no time to kill"
            status = stack.status()
            victim = next(n for n in route_nodes(status) if n != "node-a")
            epoch_before = status.plan.epoch
        with phases(f"kill {victim} mid-generation"):
            replays = sample(scrape(stack, "node-a"), "edgesplit_session_replays_total")
            got: list[int] = []
            killer = threading.Thread(target=lambda: sh(
                ["docker", "kill", stack.container(victim)], env=engine.env, quiet=True))

            def on_token(r: inference_pb2.GenerateResponse) -> None:
                got.append(r.token_id)
                if len(got) == KILL_AT:
                    killer.start()  # the stream goes on while docker kills it

            stack.generate(LONG, on_token=on_token)
            killer.join()
            assert got == reference, "greedy tokens differ after the failover"
            assert not stack.inspect(victim)["State"]["Running"]
            # Mid-generation: the entry lost a step and replayed the session.
            replayed = sample(scrape(stack, "node-a"), "edgesplit_session_replays_total")
            assert replayed > replays, "the node died after the generation, not in it"
            after = wait_route_without(stack, victim)
            print(f"failover: epoch {epoch_before} -> {after.plan.epoch}, "
                  f"route {route_nodes(after)}, {replayed - replays:g} replay(s)")
        with phases("restart broadcaster and orchestrator"):
            kept = stack.status().plan.epoch
            stack.compose("restart", "broadcaster", "orchestrator", quiet=True)
            alive = tuple(s for s in RUNNING if s != victim)
            stack.wait_healthy(alive)
            status = stack.status()
            assert status.plan.epoch == kept, (kept, status.plan.epoch)
            replies = stack.generate(16)
            assert [r.token_id for r in replies] == reference[:16]
            assert {r.epoch for r in replies} == {kept}
        with phases("scenario conditions"):
            # init again with a scenario writes its conditions; the job sets them
            # through each agent's TestbedAdmin (its own admin certificate), on
            # every node: the killed one is started again first.
            stack.compose("start", victim, quiet=True)
            stack.wait_healthy(RUNNING)
            # As an operator sets it (in .env) for every compose command.
            stack.env["EDGESPLIT_SCENARIO"] = "wan"
            try:
                made = stack.compose("run", "--rm", "init", quiet=True).stdout
                assert "scenario 'wan'" in made, made
                written = stack.compose("run", "--rm", "--no-deps", "--entrypoint", "cat",
                                        "conditions", "/data/conditions.json",
                                        quiet=True).stdout
                out = stack.compose("run", "--rm", "--no-deps", "conditions", quiet=True)
                out = out.stdout + out.stderr
            finally:
                del stack.env["EDGESPLIT_SCENARIO"]
            assert "node-a" in written, written
            assert "node-a: slowdown 4, background 0; node-b 10 ms 100 Mbit/s, " \
                   "node-c 20 ms 50 Mbit/s" in out, out
            assert "node-c: slowdown 2, background 0.3" in out, out
            slowed = stack.generate(16)  # slower hops, the same greedy tokens
            assert [r.token_id for r in slowed] == reference[:16]
        with phases("down -v"):
            stack.compose("down", "-v", "--remove-orphans", quiet=True)
            left = sh(["docker", "volume", "ls", "-q", "--filter",
                       f"label=com.docker.compose.project={PROJECT}"], env=engine.env,
                      quiet=True).stdout.split()
            assert not left, f"volumes left after down -v: {left}"
    finally:
        # After a failure (a no-op after the phase above).
        stack.compose("down", "-v", "--remove-orphans", check=False, quiet=True)
        VAR.mkdir(parents=True, exist_ok=True)
        (VAR / "phases.json").write_text(json.dumps(phases.times, indent=1))
        print("\nphases (s): " + json.dumps(phases.times))
