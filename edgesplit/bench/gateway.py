"""``edgesplit bench gateway``: tokens/s and time to first token through the
OpenAI gateway against direct ``Inference.Generate`` on the same entry, side
by side in one run.

One test bed and one gateway process serve both paths. For each concurrency
level the same prompts go out as N concurrent streams, direct then through
the gateway, alternating for ``--repeats`` rounds so machine noise hits both;
tokens/s is all streams' tokens over the round's wall time (median of the
rounds), TTFT the median over every stream of every round, as a client
measures them (request sent to first token received). The gateway process's
CPU time per token it relayed is reported too: on a machine whose cores the
node agents already fill, that CPU is what the ratio pays for.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MODEL_NAME = "bench"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--levels", default="1,16", help="concurrent streams per level, comma-separated")
    p.add_argument("--nodes", type=int, default=3, help="node agents of the test bed")
    p.add_argument("--layers", type=int, default=6, help="decoder layers of the generated model")
    p.add_argument("--hidden", type=int, default=128, help="hidden size of the generated model")
    p.add_argument("--prompt-tokens", type=int, default=16, help="prompt length of each stream")
    p.add_argument("--new-tokens", type=int, default=32, help="tokens each stream generates")
    p.add_argument("--repeats", type=int, default=3, help="rounds per level and path")
    p.add_argument("--dir", default="var/bench", help="where the generated model is cached")
    p.add_argument("--insecure", action="store_true",
                   help="plaintext on loopback instead of mTLS behind the gateway")


def _log(msg: str) -> None:
    print(f"[bench gateway] {msg}", file=sys.stderr, flush=True)


async def _direct(stub: Any, ids: list[int], new: int) -> tuple[float, int]:
    from edgesplit.v1 import inference_pb2

    start, ttft, n = time.perf_counter(), 0.0, 0
    req = inference_pb2.GenerateRequest(token_ids=ids, max_new_tokens=new)
    async for _ in stub.Generate(req, timeout=600):
        n += 1
        if n == 1:
            ttft = time.perf_counter() - start
    return ttft, n


async def _gateway(http: Any, ids: list[int], new: int) -> tuple[float, int]:
    body = {"model": MODEL_NAME, "prompt": ids, "max_tokens": new, "temperature": 0,
            "stream": True, "stream_options": {"include_usage": True}}
    start, ttft, n = time.perf_counter(), 0.0, 0
    async with http.stream("POST", "/v1/completions", json=body) as resp:
        resp.raise_for_status()
        async for line in resp.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                raise RuntimeError(chunk["error"])
            if not ttft:
                ttft = time.perf_counter() - start
            if chunk.get("usage"):  # tokens, not chunks: empty deltas are not sent
                n = chunk["usage"]["completion_tokens"]
    return ttft, n


async def _round(one: Any, prompts: list[list[int]], new: int) -> tuple[float, list[float], int]:
    start = time.perf_counter()
    results = await asyncio.gather(*(one(ids, new) for ids in prompts))
    wall = time.perf_counter() - start
    tokens = sum(n for _, n in results)
    return tokens / wall, [t for t, _ in results], tokens


def _cpu_s(proc: Any) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


async def _measure(entry: str, client: Any, gateway: str, gateway_proc: Any, levels: list[int],
                   args: argparse.Namespace, vocab: int) -> list[dict[str, Any]]:
    """``client``: the direct path's transport (the bed's client certificate)."""
    import httpx

    from edgesplit.v1 import inference_pb2_grpc

    channel = client.aio_channel(entry)
    stub = inference_pb2_grpc.InferenceStub(channel)
    rng = random.Random(0)
    out = []
    async with httpx.AsyncClient(base_url=f"http://{gateway}", timeout=600,
                                 limits=httpx.Limits(max_connections=max(levels) + 4)) as http:
        paths = {"direct": lambda ids, new: _direct(stub, ids, new),
                 "gateway": lambda ids, new: _gateway(http, ids, new)}
        for path in paths.values():  # warm-up: as many connections as the top level needs
            await _round(path, [[5, 6, 7]] * max(levels), 4)
        for n in levels:
            prompts = [[rng.randrange(3, vocab) for _ in range(args.prompt_tokens)]
                       for _ in range(n)]
            tps: dict[str, list[float]] = {p: [] for p in paths}
            ttft: dict[str, list[float]] = {p: [] for p in paths}
            cpu_s, via_tokens = 0.0, 0
            for r in range(args.repeats):
                for name, path in paths.items():
                    before = _cpu_s(gateway_proc)
                    rate, firsts, tokens = await _round(path, prompts, args.new_tokens)
                    if name == "gateway":
                        cpu_s, via_tokens = cpu_s + _cpu_s(gateway_proc) - before, \
                            via_tokens + tokens
                    tps[name].append(rate)
                    ttft[name].extend(firsts)
                _log(f"{n} streams, round {r + 1}/{args.repeats}: direct "
                     f"{tps['direct'][-1]:.1f} tok/s, gateway {tps['gateway'][-1]:.1f} tok/s")
            direct, via = statistics.median(tps["direct"]), statistics.median(tps["gateway"])
            out.append({"streams": n, "direct_tokens_per_s": round(direct, 2),
                        "gateway_tokens_per_s": round(via, 2),
                        "ratio": round(via / direct, 3) if direct else None,
                        "ttft_ms_direct": round(statistics.median(ttft["direct"]) * 1e3, 1),
                        "ttft_ms_gateway": round(statistics.median(ttft["gateway"]) * 1e3, 1),
                        # the gateway's own cost, robust to a busy machine's noise
                        "gateway_cpu_ms_per_token": round(cpu_s / max(1, via_tokens) * 1e3, 3)})
    await channel.close()
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    from edgesplit.model.shard import Manifest
    from edgesplit.procs import start_service
    from edgesplit.testbed import Testbed, ensure_model

    levels = [int(x) for x in args.levels.split(",") if x]
    base = Path(args.dir)
    tag = f"qwen3-h{args.hidden}-l{args.layers}"
    shards = ensure_model(base / f"model-{tag}", base / f"shards-{tag}", layers=args.layers,
                          hidden=args.hidden)
    vocab = 500  # ids the generated tokenizer emits, well inside the model's vocabulary
    tmp = Path(tempfile.mkdtemp(prefix="edgesplit-bench-gateway-"))
    _log(f"starting {args.nodes} node agents and the gateway ...")
    bed = Testbed.up(args.nodes, shards, tmp / "bed", insecure=args.insecure)
    gateway = None
    try:
        bed.apply(bed.even_plan())
        entry = bed.nodes[0]
        gateway = start_service("gateway", tmp, [
            "--model-dir", str(shards), "--model-name", MODEL_NAME,
            "--entry-addresses", f"{entry.node_id}={entry.address}",
            "--max-concurrent", str(max(levels) * 2), "--log-level", "WARNING"],
            pki=bed.local_pki, insecure=not bed.secure)
        import psutil

        from edgesplit.bedpki import CLIENT

        levels_out = asyncio.run(_measure(entry.address, bed.transport(CLIENT), gateway.address,
                                          psutil.Process(gateway.proc.pid), levels, args, vocab))
    finally:
        if gateway is not None:
            gateway.stop()
        bed.down()
    return {"levels": levels_out, "new_tokens": args.new_tokens,
            "prompt_tokens": args.prompt_tokens, "nodes": args.nodes,
            "model": {"layers": args.layers, "hidden": args.hidden,
                      "digest": Manifest.load(shards).model_digest[:12]},
            "repeats": args.repeats, "tls": bed.secure}
