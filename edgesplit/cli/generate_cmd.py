"""``edgesplit generate --entry ADDR "prompt"`` — the gRPC client."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import grpc


def register(sub: Any) -> None:
    p = sub.add_parser("generate", help="generate text through an entry node")
    p.add_argument("prompt")
    p.add_argument("--entry", default="127.0.0.1:50051", help="entry node address")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--privacy", choices=["low", "high"], default="low")
    p.add_argument("--timeout", type=float, default=300.0, help="deadline of the call, s")
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from edgesplit.rpc.transport import Transport
    from edgesplit.v1 import common_pb2, inference_pb2, inference_pb2_grpc

    req = inference_pb2.GenerateRequest(
        prompt=args.prompt, max_new_tokens=args.max_new_tokens,
        sampling=inference_pb2.SamplingParams(temperature=args.temperature, top_p=args.top_p,
                                              seed=args.seed),
        privacy=common_pb2.PRIVACY_HIGH if args.privacy == "high" else common_pb2.PRIVACY_LOW)
    last = None
    with Transport().sync_channel(args.entry) as channel:
        try:
            for reply in inference_pb2_grpc.InferenceStub(channel).Generate(
                    req, timeout=args.timeout):
                sys.stdout.write(reply.text)
                sys.stdout.flush()
                last = reply
        except grpc.RpcError as exc:
            print(f"\nerror: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    if last is not None:
        print(f"\n[{last.index + 1} tokens, finish={last.finish_reason}, epoch {last.epoch}]",
              file=sys.stderr)
    return 0
