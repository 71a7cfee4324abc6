"""``edgesplit bench pipeline``: monolithic ``generate`` vs a split across node
agents on 127.0.0.1, measured side by side in one process tree.

Runs alternate (monolithic, split, monolithic, split, ...) so that machine
noise hits both; the figure is the ratio of medians. The agents serve mTLS
(every hop and the client call authenticated, as in production) unless
``--insecure``; the JSON says which (``"tls"``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_split_arguments(p)
    p.add_argument("--new-tokens", type=int, default=64, help="tokens generated per run")
    p.add_argument("--repeats", type=int, default=3, help="runs of each side")


def add_split_arguments(p: argparse.ArgumentParser) -> None:
    """The model, the split and the machine, shared with ``bench load``."""
    p.add_argument("--hidden", type=int, default=1024, help="hidden size of the generated model")
    p.add_argument("--layers", type=int, default=16, help="decoder layers of the generated model")
    p.add_argument("--family", default="qwen3", help="architecture family of the generated model")
    p.add_argument("--nodes", type=int, default=3, help="hops of the split")
    p.add_argument("--prompt-tokens", type=int, default=64, help="prompt length")
    p.add_argument("--wire-dtype", default="float32", help="dtype of activations between nodes")
    p.add_argument("--device", default="cpu", help="cpu or cuda (both sides)")
    p.add_argument("--torch-threads", type=int, default=0,
                   help="torch intra-op threads on both sides (0: torch's default)")
    p.add_argument("--ring-waves", type=int, default=0,
                   help="the entry's --ring-waves (0: one per core of this machine, "
                        "which all the agents share)")
    p.add_argument("--dir", default="var/bench", help="where the generated model is cached")
    p.add_argument("--insecure", action="store_true",
                   help="plaintext on loopback instead of mTLS between the agents")


def _log(msg: str) -> None:
    print(f"[bench pipeline] {msg}", file=sys.stderr, flush=True)


def _monolithic(model: Any, ids: list[int], new: int, device: str) -> tuple[float, list[int]]:
    import torch

    x = torch.tensor([ids], device=device)
    mask = torch.ones_like(x)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(x, attention_mask=mask, max_new_tokens=new, min_new_tokens=new,
                             do_sample=False, pad_token_id=0)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start, out[0, len(ids):].tolist()


def _agents_cpu_s(bed: Any) -> float:
    """CPU seconds the bed's agents have used so far (robust to a busy machine,
    unlike wall time: the cost of TLS and framing shows here)."""
    import psutil

    total = 0.0
    for n in bed.nodes:
        t = psutil.Process(n.pid).cpu_times()
        total += t.user + t.system
    return total


def _split(bed: Any, ids: list[int], new: int) -> tuple[float, list[int], list[float]]:
    from edgesplit.rpc.convert import seconds

    start = time.perf_counter()
    replies = bed.generate(bed.nodes[0].node_id, token_ids=ids, max_new_tokens=new,
                           timeout_s=600)
    elapsed = time.perf_counter() - start
    return elapsed, [r.token_id for r in replies], [seconds(r.step_latency) for r in replies[1:]]


def decode_frame_bytes(hidden: int, wire_dtype: str) -> int:
    """Bytes of one decode-step link message ([1, 1, hidden]) as the agents send it."""
    from edgesplit.model.base import WIRE_DTYPES, WireTensor
    from edgesplit.security.channel import FrameSealer
    from edgesplit.security.header import FrameHeader
    from edgesplit.v1 import node_agent_pb2 as na

    wire = WireTensor(bytes(hidden * WIRE_DTYPES[wire_dtype]), (1, 1, hidden), wire_dtype)
    header = FrameHeader("0123456789abcdef.0", 10, 1, 1, "node-0", "node-1", wire.shape,
                         wire.dtype, 0, 1, "node-0", 74)
    nonce, ct = FrameSealer(os.urandom(32), "node-0", receiver_id="node-1").seal(header,
                                                                                 wire.data)
    msg = na.LinkMessage(seq=1 << 20, frame=na.Frame(header=na.FrameHeader(**header.as_dict()),
                                                     nonce=nonce, ciphertext=ct))
    return msg.ByteSize()


@contextlib.contextmanager
def split_bed(args: argparse.Namespace, log: Callable[[str], None] = _log
              ) -> Iterator[tuple[Any, Any, Any]]:
    """(the whole model for the monolithic side, the running test bed of
    ``args.nodes`` production agents with an even split applied, the plan)."""
    from edgesplit.testbed import QUIET_THREADS

    # Both sides under one thread policy: the agents run with QUIET_THREADS, so
    # the monolithic reference does too (set before torch starts its threads).
    for key, value in QUIET_THREADS.items():
        os.environ.setdefault(key, value)
    import torch
    from transformers import AutoModelForCausalLM

    from edgesplit.testbed import Testbed, ensure_model

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    base = Path(args.dir)
    tag = model_tag(args)
    log(f"model {tag} (generated once, seeded) ...")
    shards = ensure_model(base / f"model-{tag}", base / f"shards-{tag}", family=args.family,
                          layers=args.layers, hidden=args.hidden, heads=16, kv_heads=8)
    model = AutoModelForCausalLM.from_pretrained(base / f"model-{tag}",
                                                 dtype=torch.float32).to(args.device).eval()
    extra = ["--device", args.device] if args.device != "cpu" else []
    bed_dir = Path(tempfile.mkdtemp(prefix="edgesplit-bench-"))
    log(f"starting {args.nodes} node agents ...")
    # Production agents: no emulation wrappers, no TestbedAdmin.
    # The agents' real compute shares this machine: as many waves as it can
    # run side by side (docs/data-plane.md, waves).
    bed = Testbed.up(args.nodes, shards, bed_dir, extra_args=extra, admin=False,
                     torch_threads=args.torch_threads, insecure=args.insecure,
                     ring_waves=ring_waves(args))
    try:
        plan = bed.even_plan()  # the production route shape (core.route)
        bed.apply(plan, wire_dtype=args.wire_dtype)
        yield model, bed, plan
    finally:
        bed.down()


def ring_waves(args: argparse.Namespace) -> int:
    from edgesplit.testbed import shared_host_waves

    return args.ring_waves or shared_host_waves()


def model_tag(args: argparse.Namespace) -> str:
    return f"{args.family}-h{args.hidden}-l{args.layers}"


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from edgesplit.core.route import format_route

    with split_bed(args) as (model, bed, plan):
        vocab = model.config.vocab_size
        rng = random.Random(0)
        ids = [rng.randrange(3, vocab) for _ in range(args.prompt_tokens)]
        _log("warm-up ...")
        _monolithic(model, ids[:8], 4, args.device)
        _split(bed, ids[:8], 4)
        mono_t, split_t, steps = [], [], []
        agents_cpu_s = 0.0
        mono_tokens: list[int] = []
        split_tokens: list[int] = []
        for r in range(args.repeats):
            t, mono_tokens = _monolithic(model, ids, args.new_tokens, args.device)
            mono_t.append(t)
            before = _agents_cpu_s(bed)
            t, split_tokens, step_lat = _split(bed, ids, args.new_tokens)
            agents_cpu_s += _agents_cpu_s(bed) - before
            split_t.append(t)
            steps.extend(step_lat)
            _log(f"run {r + 1}/{args.repeats}: monolithic {mono_t[-1]:.2f}s, "
                 f"split {split_t[-1]:.2f}s")
    mono, split = statistics.median(mono_t), statistics.median(split_t)
    hops = args.nodes  # the ring: node-0 -> node-1 -> ... -> node-0
    return {
        "model": model_tag(args),
        "device": args.device,
        "prompt_tokens": args.prompt_tokens,
        "new_tokens": args.new_tokens,
        "repeats": args.repeats,
        "monolithic_tokens_per_s": round(args.new_tokens / mono, 2),
        "split_tokens_per_s": round(args.new_tokens / split, 2),
        "ratio": round(mono / split, 3),
        # each run's ratio to the monolithic run just before it: how much the
        # machine moved the figure while this benchmark ran
        "ratio_per_run": [round(m_t / s_t, 3) for m_t, s_t in zip(mono_t, split_t, strict=True)],
        "hops": hops,
        "per_hop_overhead_ms": round((split - mono) / args.new_tokens / hops * 1000, 3),
        "split_decode_step_ms_p50": round(statistics.median(steps) * 1000, 2) if steps else None,
        "bytes_per_token_per_hop": decode_frame_bytes(args.hidden, args.wire_dtype),
        "wire_dtype": args.wire_dtype,
        "torch_threads": args.torch_threads or torch.get_num_threads(),
        "ring_waves": ring_waves(args),  # the entry's --ring-waves
        "tokens_match": mono_tokens == split_tokens,
        "tls": bed.secure,  # mTLS on every hop and on the client's call
        # all agents' CPU per generated token (prefill included): compare with --insecure
        "split_agents_cpu_ms_per_token": round(agents_cpu_s / (args.repeats * args.new_tokens)
                                               * 1000, 2),
        "route": format_route(plan.routes[0]),
    }
