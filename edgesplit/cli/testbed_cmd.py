"""``edgesplit testbed up|status|down`` — node agents as local processes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from edgesplit.cli.generate_cmd import ENTRY_FILE

GATEWAY_FILE = "gateway.json"  # in the state directory: pid and address of its gateway


def register(sub: Any) -> None:
    p = sub.add_parser("testbed", help="run a local test bed of node agents")
    p.add_argument("--dir", default="var/testbed", help="state directory of the test bed")
    tsub = p.add_subparsers(dest="testbed_command", required=True)
    up = tsub.add_parser("up", help="start N node agents and roll out a static plan")
    up.add_argument("--nodes", type=int, default=3, help="node agents to start")
    up.add_argument("--model", default="", help="HF model directory (default: a generated "
                                                 "tiny model under --dir)")
    up.add_argument("--plan", default="", help="YAML/JSON plan: {cuts: [..]} or "
                                               "{segments: [[node, start, end], ..]}")
    up.add_argument("--wire-dtype", default="float32",
                    choices=["float32", "bfloat16", "float16"],
                    help="dtype of activations between nodes")
    up.add_argument("--gateway", action=argparse.BooleanOptionalAction, default=True,
                    help="also start the OpenAI gateway in front of the entry")
    up.add_argument("--gateway-listen", default="127.0.0.1:0",
                    help="HTTP address of the gateway (port 0: a free one)")
    up.add_argument("--insecure", action="store_true",
                    help="plaintext on loopback instead of mTLS (default: every agent and "
                         "the gateway get a certificate made under DIR/pki)")
    up.set_defaults(handler=_up)
    st = tsub.add_parser("status", help="what each node holds")
    st.add_argument("--json", action="store_true", help="print JSON")
    st.set_defaults(handler=_status)
    down = tsub.add_parser("down", help="stop the test bed's node agents")
    down.set_defaults(handler=_down)


def _load_plan(path: str, bed: Any) -> Any:
    import yaml

    from edgesplit.core.route import RouteError
    from edgesplit.testbed import plan_from_cuts

    raw = yaml.safe_load(Path(path).read_text())
    m = bed.manifest()
    nodes = [n.node_id for n in bed.nodes]
    if "cuts" in raw:
        return plan_from_cuts(nodes, raw["cuts"], m.num_layers, m.model_digest, bed.epoch + 1)
    given = [(str(n), int(s), int(e)) for n, s, e in raw["segments"]]
    plan = plan_from_cuts([n for n, _, _ in given], [s for _, s, _ in given[1:]],
                          m.num_layers, m.model_digest, bed.epoch + 1)
    built = [(s.node, s.start, s.end) for s in plan.routes[0].segments[:-1]]
    if built != given:
        raise RouteError(given[0][0], f"segments {given} are not consecutive over "
                         f"{m.num_layers} layers")
    return plan


def _up(args: argparse.Namespace) -> int:
    from edgesplit.model.shard import MANIFEST, shard_model
    from edgesplit.testbed import Testbed, ensure_model

    base = Path(args.dir)
    if args.model:
        shards = base / "shards"
        if not (shards / MANIFEST).exists():
            shard_model(args.model, shards)
    else:
        print("generating the default model (seeded, local) ...", flush=True)
        shards = ensure_model(base / "model", base / "shards")
    print(f"starting {args.nodes} node agents ...", flush=True)
    bed = Testbed.up(args.nodes, shards, base, insecure=args.insecure)
    plan = _load_plan(args.plan, bed) if args.plan else bed.even_plan()
    bed.apply(plan, wire_dtype=args.wire_dtype)
    for n in bed.nodes:
        print(f"  {n.node_id:8} {n.address:22} pid {n.pid}")
    route = plan.routes[0]
    (base / ENTRY_FILE).write_text(route.entry)  # what `edgesplit generate` sends to
    print("route:", " -> ".join(f"{s.node}[{s.start},{s.end})" for s in route.segments),
          f"-> {route.entry} (epoch {plan.epoch})")
    entry = bed.node(route.entry)
    print(f"entry: {entry.address}   try: edgesplit generate --testbed-dir {base} \"Hello\"")
    print(f"tls: {'mTLS, certificates in ' + bed.pki if bed.secure else 'off (--insecure)'}")
    if args.gateway:
        from services.gateway.launch import start_gateway

        name = Path(args.model).name if args.model else "tiny"
        gw = start_gateway(base, shards, entries={entry.node_id: entry.address},
                           listen=args.gateway_listen, extra_args=("--model-name", name),
                           pki=bed.local_pki, insecure=not bed.secure)
        (base / GATEWAY_FILE).write_text(json.dumps({"pid": gw.proc.pid,
                                                    "address": gw.address}))
        print(f"gateway: http://{gw.address}/v1   try: curl http://{gw.address}/v1/completions "
              f"-H 'content-type: application/json' -d '{{\"model\": \"{name}\", "
              f"\"prompt\": \"Hello\", \"max_tokens\": 8}}'")
    return 0


def _status(args: argparse.Namespace) -> int:
    from edgesplit.testbed import Testbed

    bed = Testbed.load(Path(args.dir))
    rows = []
    for n in bed.nodes:
        try:
            info = bed.info(n.node_id)
            segs = [f"{s.entry}#{s.hop}:[{s.segment.start},{s.segment.end})"
                    for s in info.segments]
            rows.append({"node": n.node_id, "address": n.address, "up": True,
                         "epoch": info.committed_epoch, "segments": segs,
                         "sessions": info.sessions, "kv_cache_bytes": info.kv_cache_bytes})
        except Exception as exc:  # noqa: BLE001 - a dead node is a status, not a crash
            rows.append({"node": n.node_id, "address": n.address, "up": False,
                         "error": type(exc).__name__})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        state = (f"epoch {r['epoch']} {' '.join(r['segments'])} sessions {r['sessions']}"
                 if r["up"] else f"DOWN ({r['error']})")
        print(f"{r['node']:8} {r['address']:22} {state}")
    return 0


def _down(args: argparse.Namespace) -> int:
    from edgesplit.testbed import Testbed

    base = Path(args.dir)
    bed = Testbed.load(base)
    gateway = base / GATEWAY_FILE
    if gateway.exists():
        import psutil

        try:
            proc = psutil.Process(json.loads(gateway.read_text())["pid"])
            proc.terminate()  # SIGTERM: the gateway drains its streams, then exits
            proc.wait(10)
        except psutil.NoSuchProcess:
            pass
        except psutil.TimeoutExpired:
            proc.kill()
        gateway.unlink()
    bed.down()
    print("test bed stopped")
    return 0
