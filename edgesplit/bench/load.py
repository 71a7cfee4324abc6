"""``edgesplit bench load``: the split under load against batched ``generate``.

N closed-loop clients (each sends its next request when the last one ends)
run against the entry of a 3-node split on 127.0.0.1, whose nodes batch every
step waiting at them (docs/data-plane.md, batching); in the same run, the
whole model's ``generate`` with batch N on the same prompts. Per level: the
aggregate tokens/s of both and their ratio, client-side step and first-token
latencies, refused requests, and whether every session's tokens equal its
solo run (or, at the first differing step, the solo run's top-2 logit margin
is below 1e-4: a true near-tie).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import threading
import time
from typing import Any

from edgesplit.bench.pipeline import add_split_arguments, model_tag, ring_waves, split_bed

NEAR_TIE = 1e-4


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_split_arguments(p)
    p.add_argument("--levels", default="1,4,16,32",
                   help="comma-separated numbers of concurrent clients")
    p.add_argument("--tokens", type=int, default=64, help="new tokens per request")
    p.add_argument("--rounds", type=int, default=1,
                   help="requests each client sends, one after the other")


def _log(msg: str) -> None:
    print(f"[bench load] {msg}", file=sys.stderr, flush=True)


def _percentile(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def _monolithic(model: Any, prompts: list[list[int]], new: int,
                device: str) -> tuple[float, list[list[int]]]:
    import torch

    x = torch.tensor(prompts, device=device)  # equal lengths: no padding
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=new,
                             min_new_tokens=new, do_sample=False, pad_token_id=0)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start, out[:, x.shape[1]:].tolist()


class _Client(threading.Thread):
    """One closed-loop client: ``rounds`` requests back to back, timed per reply."""

    def __init__(self, bed: Any, prompt: list[int], new: int, rounds: int) -> None:
        super().__init__(daemon=True)
        self.bed, self.prompt, self.new, self.rounds = bed, prompt, new, rounds
        self.tokens: list[list[int]] = []
        self.ttft: list[float] = []
        self.steps: list[float] = []
        self.refused = self.failed = 0

    def run(self) -> None:
        import grpc

        from edgesplit.bedpki import CLIENT
        from edgesplit.v1 import inference_pb2, inference_pb2_grpc

        req = inference_pb2.GenerateRequest(token_ids=inference_pb2.TokenIds(ids=self.prompt),
                                            max_new_tokens=self.new)
        entry = self.bed.nodes[0].address  # mTLS as a client unless the bed is --insecure
        with self.bed.transport(CLIENT).sync_channel(entry) as ch:
            stub = inference_pb2_grpc.InferenceStub(ch)
            for _ in range(self.rounds):
                sent = last = time.perf_counter()
                got: list[int] = []
                try:
                    for reply in stub.Generate(req, timeout=900):
                        now = time.perf_counter()
                        (self.steps if got else self.ttft).append(now - (last if got else sent))
                        last = now
                        got.append(reply.token_id)
                except grpc.RpcError as exc:
                    if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                        self.refused += 1
                    else:
                        self.failed += 1
                        _log(f"request failed: {exc.code().name}: {exc.details()}")
                    continue
                self.tokens.append(got)


def _split(bed: Any, prompts: list[list[int]], new: int,
           rounds: int) -> tuple[float, list[_Client]]:
    clients = [_Client(bed, p, new, rounds) for p in prompts]
    start = time.perf_counter()
    for c in clients:
        c.start()
    for c in clients:
        c.join()
    return time.perf_counter() - start, clients


def _matches(model: Any, prompt: list[int], got: list[int], solo: list[int],
             device: str) -> bool:
    """``got`` equals ``solo`` (the split stops at eos, ``generate`` here does
    not: a prefix ending in eos counts), or where it first differs it makes
    the solo run's token, or the solo run's top-2 logits lie within NEAR_TIE
    there (the solo logits recomputed at that step)."""
    import torch

    k = next((i for i, (a, b) in enumerate(zip(got, solo, strict=False)) if a != b), None)
    if k is None:
        eos = model.generation_config.eos_token_id
        stops = set(eos) if isinstance(eos, list) else {eos}
        ok = len(got) == len(solo) or (bool(got) and got[-1] in stops)
        if not ok:
            _log(f"tokens: {len(got)} of {len(solo)}, last {got[-1:]}, eos {stops}")
        return ok
    x = torch.tensor([prompt + solo[:k]], device=device)
    with torch.inference_mode():
        logits = model(x).logits[0, -1].float()
    top = torch.topk(logits, 2)
    margin = float(top.values[0] - top.values[1])
    if got[k] == int(top.indices[0]):
        # The split made the solo run's token; the batched reference did not
        # (generate here never picks eos: min_new_tokens holds it back).
        return True
    if margin >= NEAR_TIE:
        _log(f"tokens differ at step {k} of {len(solo)}: solo top-2 margin {margin:.3g}")
    return margin < NEAR_TIE


def _level(model: Any, bed: Any, n: int, args: argparse.Namespace,
           vocab: int) -> dict[str, Any]:
    rng = random.Random(n)
    prompts = [[rng.randrange(3, vocab) for _ in range(args.prompt_tokens)] for _ in range(n)]
    mono_s, mono_tokens = _monolithic(model, prompts, args.tokens, args.device)
    split_s, clients = _split(bed, prompts, args.tokens, args.rounds)
    made = sum(len(t) for c in clients for t in c.tokens)
    # The batched reference equals each solo run but for near-ties; _matches
    # recomputes the solo logits wherever the split differs from it.
    match = all(_matches(model, c.prompt, t, solo, args.device)
                for c, solo in zip(clients, mono_tokens, strict=True) for t in c.tokens)
    steps = [s for c in clients for s in c.steps]
    ttft = [s for c in clients for s in c.ttft]
    split_tps = made / split_s
    mono_tps = n * args.tokens / mono_s
    _log(f"N={n}: split {split_tps:.1f} tok/s, monolithic batched {mono_tps:.1f} tok/s")
    return {
        "clients": n,
        "split_tokens_per_s": round(split_tps, 2),
        "monolithic_batched_tokens_per_s": round(mono_tps, 2),
        "ratio_vs_monolithic_batched": round(split_tps / mono_tps, 3),
        "step_ms_p50": _ms(_percentile(steps, 0.5)),
        "step_ms_p95": _ms(_percentile(steps, 0.95)),
        "ttft_ms_p50": _ms(statistics.median(ttft) if ttft else None),
        "refused": sum(c.refused for c in clients),
        "failed": sum(c.failed for c in clients),
        "tokens_match": match and all(len(c.tokens) == args.rounds for c in clients),
    }


def _ms(s: float | None) -> float | None:
    return None if s is None else round(s * 1000, 2)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from edgesplit.core.route import format_route

    levels = [int(v) for v in args.levels.split(",") if v.strip()]
    with split_bed(args, _log) as (model, bed, plan):
        vocab = model.config.vocab_size
        _log("warm-up ...")
        _monolithic(model, [[5] * 8], 4, args.device)
        _split(bed, [[5] * 8], 4, 1)
        results = [_level(model, bed, n, args, vocab) for n in levels]
    return {
        "model": model_tag(args),
        "device": args.device,
        "route": format_route(plan.routes[0]),
        "prompt_tokens": args.prompt_tokens,
        "new_tokens": args.tokens,
        "rounds": args.rounds,
        "tls": bed.secure,
        "torch_threads": args.torch_threads or torch.get_num_threads(),
        "ring_waves": ring_waves(args),  # the entry's --ring-waves
        "levels": results,
    }
