"""The OpenAI gateway in front of a real 3-node test bed, driven by the official
``openai`` client.

The bed serves two routes (replicas) so that entry failover has somewhere to
go: entry node-0 runs embed, layers 0-1 and head, node-1 runs layers 2-3;
entry node-2 runs embed, layer 0 and head, node-1 runs layers 1-3. With a
privacy depth of 2 and only node-0 and node-2 trusted, node-2's route puts
layer 1 on an untrusted node, so privacy=high can be served by node-0 only.
A monitor gives the gateway its entries (alive nodes and their addresses).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

from edgesplit import testbed as tb
from edgesplit.bedpki import PKI_DIR, LocalPki
from edgesplit.core.route import route_from_cuts
from edgesplit.core.types import Epoch, NodeId, Plan
from edgesplit.rpc.assignments import (
    PeerInfo,
    ShardEntry,
    build_assignments,
    commit_request,
    sign_assignment,
)
from edgesplit.scenario.runner import free_ports
from edgesplit.security.keys import ensure_dev_keys
from edgesplit.v1 import node_agent_pb2 as na
from services.gateway.prompts import chat_prompt, load_tokenizer
from tests.conftest import ServiceProcess, start_service

INTERVAL = 0.25
KEYS = """clients:
  - {client: alice, key: sk-alice, max_concurrent: 2}
  - {client: edge-only, key: sk-edge, entries: [node-2]}
  - {client: node0-only, key: sk-node0, entries: [node-0]}
"""
MODEL = "tiny"
PROMPT = "Hello edge"


@dataclass
class Rig:
    tmp: Path
    bed: tb.Testbed
    monitor: ServiceProcess
    gateway: ServiceProcess
    shards: Path

    @property
    def url(self) -> str:
        return f"http://{self.gateway.address}"

    def client(self, key: str = "sk-alice", **kw: object) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0,
                             timeout=60, **kw)  # type: ignore[arg-type]


def two_route_plan(digest: str, epoch: int) -> Plan:
    n0, n1, n2 = NodeId("node-0"), NodeId("node-1"), NodeId("node-2")
    return Plan(Epoch(epoch), digest, (route_from_cuts(n0, [n0, n1], [2], 4),
                                       route_from_cuts(n2, [n2, n1], [1], 4)))


def roll_out(bed: tb.Testbed, plan: Plan, trusted: list[str], privacy_depth: int) -> None:
    """Prepare and commit ``plan`` with a privacy depth the test bed's own
    rollout does not take (signed with the bed's control key)."""
    m = bed.manifest()
    keys = ensure_dev_keys(Path(bed.control_key), "control")
    shards = {s.name: ShardEntry(s.name, s.sha256, s.bytes) for s in m.shards}
    peers = {n.node_id: PeerInfo(n.node_id, n.address, bytes.fromhex(n.x25519_public))
             for n in bed.nodes}
    unsigned = build_assignments(plan, shards, peers, m.num_layers,
                                 int((time.time() + 3600) * 1000), "float32", trusted,
                                 privacy_depth)
    envelopes = {node: sign_assignment(a, keys.signing) for node, a in unsigned.items()}
    for node, env in envelopes.items():
        with bed.agent(node, tb.ROLLOUT) as agent:
            agent.Prepare(na.PrepareRequest(assignment=env), timeout=120)
    for node, env in envelopes.items():
        with bed.agent(node, tb.ROLLOUT) as agent:
            agent.Commit(commit_request(env, keys.signing), timeout=30)


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    tmp = tmp_path_factory.mktemp("gateway")
    shards = tb.ensure_model(tmp / "model", tmp / "shards", layers=4, hidden=64)
    ids = ["node-0", "node-1", "node-2"]
    listen = {n: f"127.0.0.1:{p}" for n, p in zip(ids, free_ports(3), strict=True)}
    trust = {"node-0": "trusted", "node-1": "untrusted", "node-2": "trusted"}
    (tmp / "inventory.yaml").write_text("nodes:\n" + "".join(
        f"  - {{id: {n}, trust: {trust[n]}, memory: 4GiB, flops_per_s: 1.0e11, "
        f"address: '{listen[n]}'}}\n" for n in ids))
    pki = LocalPki(tmp / PKI_DIR)  # one CA for the monitor, the agents and the gateway
    monitor = start_service("monitor", tmp, ["--inventory", str(tmp / "inventory.yaml"),
                                             "--report-interval-s", str(INTERVAL),
                                             "--missed-cycles", "3"], pki=pki)
    bed = tb.Testbed.up(3, shards, tmp / "bed", listen=listen, torch_threads=1, pki=pki,
                        extra_args=["--monitor", monitor.address,
                                    "--report-interval-s", str(INTERVAL),
                                    "--step-timeout-s", "5"])
    gateway = None
    try:
        roll_out(bed, two_route_plan(bed.manifest().model_digest, 1),
                 ["node-0", "node-2"], privacy_depth=2)
        (tmp / "keys.yaml").write_text(KEYS)
        gateway = start_service("gateway", tmp, [
            "--model-dir", str(shards), "--model-name", MODEL, "--monitor", monitor.address,
            "--entries", "node-0,node-2", "--api-keys", str(tmp / "keys.yaml"),
            "--state-poll-s", str(INTERVAL), "--request-timeout-s", "60"], pki=pki)
        rig = Rig(tmp, bed, monitor, gateway, shards)
        deadline = time.monotonic() + 60
        while httpx.get(rig.url + "/readyz").status_code != 200:
            assert time.monotonic() < deadline, httpx.get(rig.url + "/readyz").text
            time.sleep(0.1)
        yield rig
    finally:
        if gateway is not None:
            gateway.stop()
        bed.down()
        monitor.stop()


def cli_generate(rig: Rig, entry: str, prompt: str, max_new: int, temperature: float,
                 seed: int) -> str:
    """`edgesplit generate` to ``entry`` with the bed's client certificate (found in
    its state directory)."""
    out = subprocess.run(
        [sys.executable, "-m", "edgesplit.cli", "generate", "--entry", entry, prompt,
         "--testbed-dir", rig.bed.base,
         "--max-new-tokens", str(max_new), "--temperature", str(temperature),
         "--seed", str(seed)], capture_output=True, text=True, timeout=120, check=True)
    return out.stdout


# ---- the same tokens as `edgesplit generate` ---------------------------------------------
@pytest.mark.parametrize(("temperature", "seed"), [(0.0, 0), (0.9, 7)])
def test_completions_match_edgesplit_generate(rig: Rig, temperature: float, seed: int) -> None:
    client = rig.client()
    whole = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=12,
                                      temperature=temperature, seed=seed)
    served_by = rig.bed.node("node-0").address  # both entries run the same model
    want = cli_generate(rig, served_by, PROMPT, 12, temperature, seed)
    assert whole.choices[0].text == want
    assert whole.usage is not None and whole.usage.completion_tokens == 12
    assert whole.usage.prompt_tokens == len(load_tokenizer(str(rig.shards)).encode(PROMPT))
    assert whole.choices[0].finish_reason == "length"
    stream = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=12,
                                       temperature=temperature, seed=seed, stream=True,
                                       stream_options={"include_usage": True})
    chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == want
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 12


def test_chat_matches_edgesplit_generate_on_the_rendered_prompt(rig: Rig) -> None:
    messages = [{"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Say hi"}]
    rendered = chat_prompt(load_tokenizer(str(rig.shards)), messages)
    assert rendered.endswith("assistant:")  # the tiny model has no template: the plain one
    want = cli_generate(rig, rig.bed.node("node-0").address, rendered, 10, 0.0, 0)
    client = rig.client()
    whole = client.chat.completions.create(model=MODEL, messages=messages,  # type: ignore[arg-type]
                                           max_tokens=10, temperature=0, seed=0)
    assert whole.choices[0].message.content == want
    assert whole.choices[0].message.role == "assistant"
    stream = client.chat.completions.create(model=MODEL, messages=messages,  # type: ignore[arg-type]
                                            max_tokens=10, temperature=0, seed=0, stream=True)
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == want
    assert chunks[-1].choices[0].finish_reason == "length"


def test_stop_string_cuts_the_answer(rig: Rig) -> None:
    client = rig.client()
    full = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=16,
                                     temperature=0).choices[0].text
    cut = next((full[:i + 1][-2:] for i in range(3, len(full)) if full[:i + 1][-2:].strip()),
               None)
    assert cut, full
    got = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=16, temperature=0,
                                    stop=[cut])
    assert got.choices[0].text == full[:full.index(cut)]
    assert got.choices[0].finish_reason == "stop"


def test_models_health_and_metrics(rig: Rig) -> None:
    assert [m.id for m in rig.client().models.list()] == [MODEL]
    assert httpx.get(rig.url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(rig.url + "/readyz").json()
    assert ready["ready"] and set(ready["healthy_entries"]) == {"node-0", "node-2"}
    text = httpx.get(rig.url + "/metrics").text
    assert 'edgesplit_gateway_requests_total{endpoint="completions",status="200"}' in text
    assert "edgesplit_gateway_time_to_first_token_seconds_bucket" in text


# ---- failures: documented status, OpenAI-shaped body -----------------------------------------
def _error(resp: httpx.Response) -> dict[str, object]:
    body = resp.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert isinstance(err, dict) and {"message", "type", "param", "code"} <= set(err), err
    assert err["message"]
    return err


def test_invalid_request_is_400(rig: Rig) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        rig.client().completions.create(model=MODEL, prompt=PROMPT, max_tokens=4,
                                        temperature=5.0)
    assert exc.value.status_code == 400
    r = httpx.post(rig.url + "/v1/completions", headers={"authorization": "Bearer sk-alice"},
                   json={"model": MODEL, "prompt": PROMPT, "n": 3})
    assert r.status_code == 400 and _error(r)["param"] == "n"
    r = httpx.post(rig.url + "/v1/completions", headers={"authorization": "Bearer sk-alice"},
                   content=b"{not json")
    assert r.status_code == 400 and _error(r)["type"] == "invalid_request_error"
    r = httpx.post(rig.url + "/v1/completions", headers={"authorization": "Bearer sk-alice"},
                   json={"model": MODEL, "prompt": "x" * (2 * 1024 * 1024)})
    assert r.status_code == 413 and _error(r)["code"] == "body_too_large"
    r = httpx.post(rig.url + "/v1/completions", headers={"authorization": "Bearer sk-alice"},
                   json={"model": "gpt-4", "prompt": PROMPT})
    assert r.status_code == 404 and _error(r)["code"] == "model_not_found"
    # Too long for the model's context: refused by the entry (INVALID_ARGUMENT).
    r = httpx.post(rig.url + "/v1/completions", headers={"authorization": "Bearer sk-alice"},
                   json={"model": MODEL, "prompt": PROMPT, "max_tokens": 100000})
    assert r.status_code == 400 and _error(r)["code"] == "invalid_argument"


def test_missing_or_wrong_api_key_is_401(rig: Rig) -> None:
    r = httpx.post(rig.url + "/v1/completions", json={"model": MODEL, "prompt": PROMPT})
    assert r.status_code == 401 and _error(r)["code"] == "missing_api_key"
    with pytest.raises(openai.AuthenticationError) as exc:
        rig.client("sk-wrong").completions.create(model=MODEL, prompt=PROMPT, max_tokens=2)
    assert exc.value.status_code == 401
    assert exc.value.code == "invalid_api_key"


def test_quota_overrun_is_429_with_retry_after(rig: Rig) -> None:
    """alice may have two requests in flight; the third is refused at once."""
    rig.bed.set_conditions("node-0", link_delay_s={"node-1": 0.05})
    rig.bed.set_conditions("node-2", link_delay_s={"node-1": 0.05})
    client = rig.client()
    streams = [client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=30,
                                         temperature=0, stream=True) for _ in range(2)]
    try:
        r = httpx.post(rig.url + "/v1/completions",
                       headers={"authorization": "Bearer sk-alice"},
                       json={"model": MODEL, "prompt": PROMPT, "max_tokens": 2})
        assert r.status_code == 429
        assert r.headers["retry-after"] == "1"
        assert _error(r)["code"] == "quota_exceeded"
        with pytest.raises(openai.RateLimitError):
            client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=2)
    finally:
        for s in streams:
            s.close()
        rig.bed.set_conditions("node-0", replace=True)
        rig.bed.set_conditions("node-2", replace=True)
    # The slots come back when the streams are closed.
    deadline = time.monotonic() + 10
    while True:
        try:
            client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=2)
            break
        except openai.RateLimitError:
            assert time.monotonic() < deadline
            time.sleep(0.1)


def test_privacy_high_goes_where_it_can_and_fails_where_it_cannot(rig: Rig) -> None:
    # Any client: node-2's route is refused by its entry, node-0's serves it.
    for _ in range(2):
        r = httpx.post(rig.url + "/v1/completions",
                       headers={"authorization": "Bearer sk-alice",
                                "x-edgesplit-privacy": "high"},
                       json={"model": MODEL, "prompt": PROMPT, "max_tokens": 3})
        assert r.status_code == 200, r.text
        assert r.headers["x-edgesplit-entry"] == "node-0"
    # A client that may use node-2 only: no route satisfies it.
    r = httpx.post(rig.url + "/v1/completions",
                   headers={"authorization": "Bearer sk-edge", "x-edgesplit-privacy": "high"},
                   json={"model": MODEL, "prompt": PROMPT, "max_tokens": 3})
    assert r.status_code == 400, r.text
    err = _error(r)
    assert err["code"] == "privacy_unsatisfiable" and err["param"] == "privacy"
    with pytest.raises(openai.BadRequestError):  # the same through the body extension
        rig.client("sk-edge").completions.create(model=MODEL, prompt=PROMPT, max_tokens=3,
                                                 extra_body={"privacy": "high"})
    r = httpx.post(rig.url + "/v1/completions",
                   headers={"authorization": "Bearer sk-edge", "x-edgesplit-privacy": "max"},
                   json={"model": MODEL, "prompt": PROMPT, "max_tokens": 3})
    assert r.status_code == 400


# ---- an entry dies mid-stream (last: it kills node-0) --------------------------------------
def test_killing_the_entry_mid_stream_fails_over_or_ends_with_an_error(rig: Rig) -> None:
    want = rig.client().completions.create(model=MODEL, prompt=PROMPT, max_tokens=40,
                                           temperature=0).choices[0].text
    rig.bed.set_conditions("node-0", link_delay_s={"node-1": 0.08})  # node-0's route is slow
    free = rig.client()  # may use any entry: continues on node-2
    pinned = rig.client("sk-node0")  # may use node-0 only: gets an error event
    a = free.completions.create(model=MODEL, prompt=PROMPT, max_tokens=40, temperature=0,
                                stream=True)
    b = pinned.completions.create(model=MODEL, prompt=PROMPT, max_tokens=40, temperature=0,
                                  stream=True)
    assert a.response.headers["x-edgesplit-entry"] == "node-0"
    assert b.response.headers["x-edgesplit-entry"] == "node-0"
    results: dict[str, object] = {}

    def drain(name: str, stream: openai.Stream) -> None:  # type: ignore[type-arg]
        text = ""
        try:
            for chunk in stream:
                text += chunk.choices[0].text
                if len(text) > 2 and "killed" not in results:
                    results["killed"] = True
                    rig.bed.kill("node-0")
            results[name] = text
        except openai.APIError as exc:
            results[name] = exc

    threads = [threading.Thread(target=drain, args=(n, s), daemon=True)
               for n, s in (("free", a), ("pinned", b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert not any(t.is_alive() for t in threads), "a stream hung after its entry died"
    assert results.get("killed")
    assert results["free"] == want  # greedy: the same answer through the other entry
    assert isinstance(results["pinned"], openai.APIError), results["pinned"]
    metrics = httpx.get(rig.url + "/metrics").text
    failovers = [ln for ln in metrics.splitlines()
                 if ln.startswith("edgesplit_gateway_failovers_total ")]
    assert failovers and float(failovers[0].split()[1]) >= 1
