"""The test bed as an operator drives it: `edgesplit testbed up`, `generate`,
`testbed status`, emulated conditions, `testbed down` — real processes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from edgesplit.testbed import Testbed


def _cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgesplit.cli", *args], capture_output=True,
                          text=True, timeout=timeout, check=False)


def test_testbed_up_generate_status_down(tmp_path: Path) -> None:
    base = str(tmp_path / "bed")
    up = _cli("testbed", "--dir", base, "up", "--nodes", "3")
    assert up.returncode == 0, up.stderr + up.stdout
    try:
        entry = re.search(r"entry: (\S+)", up.stdout)
        assert entry, up.stdout
        # mTLS: the bed's client certificate is found in its state directory.
        assert f"tls: mTLS, certificates in {base}/pki" in up.stdout
        gen = _cli("generate", "--entry", entry.group(1), "--testbed-dir", base, "Hello edge",
                   "--max-new-tokens", "6")
        assert gen.returncode == 0, gen.stderr
        assert "6 tokens" in gen.stderr or "finish=" in gen.stderr
        # Without --entry: the running bed's entry, and it says where it sent the request.
        found = _cli("generate", "--testbed-dir", base, "Hello edge", "--max-new-tokens", "6")
        assert found.returncode == 0, found.stderr
        assert found.stdout == gen.stdout
        assert f"-> {entry.group(1)} (node-0 of the test bed in {base})" in found.stderr
        # The bed's OpenAI gateway answers with the same greedy text.
        gateway = re.search(r"gateway: (http://\S+/v1)", up.stdout)
        assert gateway, up.stdout
        reply = httpx.post(gateway.group(1) + "/completions", timeout=60,
                           json={"model": "tiny", "prompt": "Hello edge", "max_tokens": 6,
                                 "temperature": 0})
        assert reply.status_code == 200, reply.text
        assert reply.json()["choices"][0]["text"] == gen.stdout
        status = _cli("testbed", "--dir", base, "status", "--json")
        rows = json.loads(status.stdout)
        assert [r["node"] for r in rows] == ["node-0", "node-1", "node-2"]
        assert all(r["up"] and r["epoch"] == 1 for r in rows)
        bed = Testbed.load(Path(base))
        cond = bed.set_conditions("node-1", compute_slowdown=4.0, link_delay_s={"node-2": 0.02})
        assert cond.compute_slowdown == 4.0 and cond.link_delay_s["node-2"] == 0.02
        again = _cli("generate", "--entry", entry.group(1), "--testbed-dir", base, "Hello edge",
                     "--max-new-tokens", "6")
        assert again.returncode == 0 and again.stdout == gen.stdout  # slower, same greedy text
    finally:
        down = _cli("testbed", "--dir", base, "down")
    assert down.returncode == 0, down.stderr
    assert not (Path(base) / "testbed.json").exists()
    with pytest.raises(httpx.ConnectError):  # the gateway went down with the bed
        httpx.get(gateway.group(1) + "/models", timeout=5)
