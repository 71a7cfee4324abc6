"""``edgesplit plan --cluster FILE.yaml --model PROFILE.json``: the planner's plan
and its cost next to every baseline's, under the same cost model."""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import asdict
from typing import Any

BASELINE_NAMES = ("static", "memory_proportional", "greedy_fill", "throughput_balanced")


def register(sub: Any) -> None:
    p = sub.add_parser("plan", help="compute a plan for a cluster and compare with baselines")
    p.add_argument("--cluster", required=True, help="cluster YAML (nodes, links, workload)")
    p.add_argument(
        "--model",
        required=True,
        help="profile JSON from `edgesplit model profile DIR --json`, or a directory holding "
        "profile.json",
    )
    p.add_argument("--mode", choices=("resplit", "placement"), default="resplit",
                   help="resplit: cuts free; placement: keep the cuts, move segments")
    p.add_argument(
        "--entry",
        action="append",
        default=None,
        help="entry node (repeatable; default: the cluster file's entries, else the first node)",
    )
    p.add_argument(
        "--current",
        help="current plan JSON (as this command prints it); placement keeps its cuts. "
        "Default for placement: the static split",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--png", default="", help="also draw the plan (nodes, segments, links with "
                                             "their bandwidth) into this PNG")
    p.set_defaults(handler=run)


def _load_profile(path: str) -> Any:
    from edgesplit.core.cluster_config import profile_from_json

    if os.path.isdir(path):
        inner = os.path.join(path, "profile.json")
        if not os.path.exists(inner):
            raise SystemExit(
                f"{path} is a directory without profile.json; run "
                f"`edgesplit model profile {path} --json > profile.json` first"
            )
        path = inner
    with open(path, encoding="utf-8") as f:
        return profile_from_json(json.load(f))


def _finite(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_finite(v) for v in x]
    return x


def _cost(cost: Any) -> dict[str, Any]:
    d = asdict(cost)
    d["per_node_utilization"] = dict(cost.per_node_utilization)
    return _finite(d)  # type: ignore[no-any-return]


def _load_cluster(path: str) -> Any:
    import yaml

    from edgesplit.core.cluster_config import cluster_from_dict

    with open(path, encoding="utf-8") as f:
        return cluster_from_dict(yaml.safe_load(f))


def compute(args: argparse.Namespace) -> dict[str, Any]:
    from edgesplit.core.baselines import BASELINES
    from edgesplit.core.cluster_config import plan_from_dict, plan_to_dict
    from edgesplit.core.cost import evaluate
    from edgesplit.core.planner import solve
    from edgesplit.core.types import Epoch, Mode, NodeId

    config = _load_cluster(args.cluster)
    profile = _load_profile(args.model)
    entries = [NodeId(e) for e in args.entry] if args.entry else list(config.entries)
    entries = entries or [config.state.nodes[0].node_id]
    wl, weights = config.workload, config.weights
    baselines = {
        name: BASELINES[name](config.state, profile, wl, entries) for name in BASELINE_NAMES
    }
    mode = Mode.PLACEMENT if args.mode == "placement" else Mode.RESPLIT
    current = None
    if args.current:
        with open(args.current, encoding="utf-8") as f:
            current = plan_from_dict(json.load(f))
    elif mode is Mode.PLACEMENT:
        current = baselines["static"].plan
    epoch = Epoch((current.epoch if current else 0) + 1)
    result = solve(
        config.state, profile, wl, entries, mode, weights, current, epoch, clock=time.perf_counter
    )
    out: dict[str, Any] = {
        "model": profile.name,
        "mode": args.mode,
        "entries": list(entries),
        "feasible": result.plan is not None,
        "reason": result.reason,
        "plan": plan_to_dict(result.plan) if result.plan else None,
        "cost": _cost(result.cost),
        "current_cost": _cost(result.current_cost) if result.current_cost else None,
        "optimal": result.optimal,
        "gap": _finite(result.gap),
        "method": result.stats.method,
        "solve_ms": round((result.stats.elapsed_s or 0.0) * 1000, 3),
        "baselines": {},
    }
    for name, b in baselines.items():
        cost = evaluate(b.plan, config.state, profile, wl, weights) if b.plan else None
        out["baselines"][name] = {
            "feasible": bool(cost and cost.feasible),
            "reason": b.reason or (cost.reason if cost else ""),
            "plan": plan_to_dict(b.plan) if b.plan else None,
            "cost": _cost(cost) if cost else None,
        }
    return out


def _show(out: dict[str, Any]) -> str:
    lines = [f"model {out['model']}, mode {out['mode']}, entries {', '.join(out['entries'])}"]
    if out["plan"]:
        from edgesplit.core.cluster_config import plan_from_dict
        from edgesplit.core.route import format_route

        for r in plan_from_dict(out["plan"]).routes:
            lines.append(f"route {r.entry}: {format_route(r)}")
        gap = "" if out["gap"] is None else f", gap {out['gap']:.4f}"
        lines.append(
            f"method {out['method']}, optimal {out['optimal']}{gap}, solved in {out['solve_ms']} ms"
        )
    else:
        lines.append(f"no plan: {out['reason']}")
    rows = [("planner", out["cost"] if out["plan"] else None, out["reason"])]
    rows += [
        (k, v["cost"] if v["feasible"] else None, v["reason"]) for k, v in out["baselines"].items()
    ]
    lines.append("")
    lines.append(
        f"{'':22}{'total':>10}{'step ms':>10}{'ttft ms':>10}{'stage ms':>10}{'spread':>8}{'priv':>6}"
    )
    for name, c, why in rows:
        if c is None:
            lines.append(f"{name:22}infeasible: {why}")
            continue
        lines.append(
            f"{name:22}{c['total']:>10.4f}{c['latency_s'] * 1e3:>10.2f}{c['ttft_s'] * 1e3:>10.1f}"
            f"{c['bottleneck_s'] * 1e3:>10.2f}{c['imbalance']:>8.3f}{c['privacy_penalty']:>6.0f}"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    out = compute(args)
    print(json.dumps(out, indent=2, sort_keys=True) if args.json else _show(out))
    if args.png:
        from edgesplit.cli.plots import plan_png

        plan_png(args.png, out, _load_cluster(args.cluster).state)
        if not args.json:
            print(f"picture: {args.png}")
    return 0 if out["feasible"] else 1
