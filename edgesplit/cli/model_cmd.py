"""``edgesplit model tiny|shard|profile``."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("model", help="generate, shard and profile models")
    msub = p.add_subparsers(dest="model_command", required=True)

    t = msub.add_parser("tiny", help="write a seeded random model with a local tokenizer")
    t.add_argument("dir", help="directory to write the model into")
    t.add_argument("--family", default="qwen3", choices=["qwen3", "qwen2", "llama", "mistral"],
                   help="architecture family")
    t.add_argument("--layers", type=int, default=4, help="decoder layers")
    t.add_argument("--hidden", type=int, default=64, help="hidden size")
    t.add_argument("--heads", type=int, default=4, help="attention heads")
    t.add_argument("--kv-heads", type=int, default=2, help="key/value heads (grouped query)")
    t.add_argument("--intermediate", type=int, default=None,
                   help="MLP width (default: the family's multiple of --hidden)")
    t.add_argument("--seed", type=int, default=0, help="weights seed: same seed, same model")
    t.set_defaults(handler=_tiny)

    s = msub.add_parser("shard", help="one safetensors file per layer + embed + head, "
                                      "with a manifest of SHA-256 digests")
    s.add_argument("dir", help="Hugging Face model directory")
    s.add_argument("out", help="shard directory to write")
    s.set_defaults(handler=_shard)

    f = msub.add_parser("profile", help="per-layer bytes, FLOPs, activation and KV bytes "
                                        "per token, from config.json alone")
    f.add_argument("dir", help="model directory, shard directory or config.json")
    f.add_argument("--dtype", default=None, help="profile as this dtype (default: the model's)")
    f.add_argument("--json", action="store_true", help="print JSON (the planner's input)")
    f.set_defaults(handler=_profile)


def _tiny(args: argparse.Namespace) -> int:
    from edgesplit.model.tiny import write_tiny_model

    out = write_tiny_model(args.dir, family=args.family, layers=args.layers, hidden=args.hidden,
                           heads=args.heads, kv_heads=args.kv_heads,
                           intermediate=args.intermediate, seed=args.seed)
    print(f"wrote {args.family} model ({args.layers} layers, hidden {args.hidden}) to {out}")
    return 0


def _shard(args: argparse.Namespace) -> int:
    from edgesplit.cli.progress import progress
    from edgesplit.model.loader import read_config
    from edgesplit.model.shard import shard_model

    parts = int(read_config(args.dir)["num_hidden_layers"]) + 2  # + embed and head
    with progress(f"sharding {args.dir}", parts) as advance:
        manifest = shard_model(args.dir, args.out,
                               on_part=lambda name, _total: advance(description=f"wrote {name}"))
    total = sum(s.bytes for s in manifest.shards)
    print(f"{len(manifest.shards)} shards, {total / 2**20:.1f} MiB, "
          f"model digest {manifest.model_digest} -> {args.out}")
    return 0


def _profile(args: argparse.Namespace) -> int:
    from edgesplit.model.profile import profile_json

    data = profile_json(args.dir, args.dtype)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    print(f"{data['name']}: {data['family']}, {data['num_layers']} layers, hidden "
          f"{data['hidden_size']}, {data['total_params'] / 1e9:.2f} B params ({data['dtype']})")
    print(f"{'part':>9} {'MiB':>9} {'GFLOP/tok':>10} {'KV B/tok':>9}")
    rows = [("embed", data["embed"]), *((f"layer.{i}", c) for i, c in enumerate(data["layers"])),
            ("head", data["head"])]
    for name, c in rows:
        print(f"{name:>9} {c['weight_bytes'] / 2**20:9.1f} {c['flops_per_token'] / 1e9:10.3f} "
              f"{c['kv_bytes_per_token']:9d}")
    print(f"activation bytes per token on the wire: {data['activation_bytes_per_token']}")
    return 0
