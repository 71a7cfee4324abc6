"""``edgesplit generate "prompt"`` — the gRPC client. Without ``--entry`` it
sends to the entry node of the test bed running under ``--testbed-dir``; without
TLS flags it presents that bed's client certificate (``DIR/pki/clients/testbed``)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from edgesplit.cli.common import add_tls_arguments, testbed_identity, transport

ENTRY_FILE = "entry"  # in a test bed's state directory: the node id of its route's entry


def register(sub: Any) -> None:
    p = sub.add_parser("generate", help="generate text through an entry node")
    p.add_argument("prompt", help="prompt text (tokenized on the entry node)")
    p.add_argument("--entry", default=os.environ.get("EDGESPLIT_ENTRY", ""),
                   help="entry node address host:port (default: $EDGESPLIT_ENTRY, else the "
                        "entry of the test bed in --testbed-dir)")
    p.add_argument("--testbed-dir", default="var/testbed",
                   help="a running test bed's state directory (its entry, its client "
                        "certificate)")
    p.add_argument("--max-new-tokens", type=int, default=32, help="tokens to generate at most")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass in (0, 1]")
    p.add_argument("--seed", type=int, default=0, help="sampling seed: same seed, same tokens")
    p.add_argument("--privacy", choices=["low", "high"], default=None,
                   help="high: only routes whose sensitive layers the entry trusts "
                        "(default: the entry's --default-privacy)")
    p.add_argument("--timeout", type=float, default=300.0, help="deadline of the call, s")
    add_tls_arguments(p)
    p.set_defaults(handler=_run)


def find_entry(testbed_dir: str) -> tuple[str, str]:
    """``(address, description)`` of the running test bed's entry node."""
    from edgesplit.testbed import Testbed

    try:
        bed = Testbed.load(Path(testbed_dir))
    except FileNotFoundError:
        raise SystemExit(f"error: no --entry given and no test bed in {testbed_dir} "
                         "(start one with `edgesplit testbed up`, or pass --entry HOST:PORT)"
                         ) from None
    marker = Path(testbed_dir) / ENTRY_FILE  # written by `testbed up` after its rollout
    node_id = marker.read_text().strip() if marker.exists() else bed.nodes[0].node_id
    node = bed.node(node_id)
    return node.address, f"{node.node_id} of the test bed in {testbed_dir}"


def _run(args: argparse.Namespace) -> int:
    import grpc

    from edgesplit.v1 import common_pb2, inference_pb2, inference_pb2_grpc

    address, where = (args.entry, "--entry") if args.entry else find_entry(args.testbed_dir)
    print(f"-> {address} ({where})", file=sys.stderr, flush=True)
    req = inference_pb2.GenerateRequest(
        prompt=args.prompt, max_new_tokens=args.max_new_tokens,
        sampling=inference_pb2.SamplingParams(temperature=args.temperature, top_p=args.top_p,
                                              seed=args.seed),
        privacy=common_pb2.Privacy.Value(f"PRIVACY_{(args.privacy or 'unspecified').upper()}"))
    last = None
    with transport(args, testbed_identity(args.testbed_dir, "client")).sync_channel(
            address) as channel:
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
        finish = inference_pb2.FinishReason.Name(last.finish_reason).removeprefix(
            "FINISH_REASON_").lower()
        print(f"\n[{last.index + 1} tokens, finish={finish}, epoch {last.epoch}]",
              file=sys.stderr)
    return 0
