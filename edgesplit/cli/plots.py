"""Pictures the CLI draws: a plan (``edgesplit plan --png``) and the planner's
solve time against cluster size (``edgesplit bench planner --png``).
matplotlib (the ``plot`` extra) is imported only here, only when asked."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _bps(x: float) -> str:
    for unit, scale in (("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if x >= scale:
            return f"{x / scale:.3g} {unit}"
    return f"{x:.0f} bit/s"


def _ms(s: float) -> str:
    return f"{s * 1e3:.0f} ms" if s >= 0.1 else f"{s * 1e3:.3g} ms"


def _segment_label(seg: dict[str, Any]) -> str:
    """``embed + L0-3``, ``L4-31``, ``head``: what one segment runs, in order."""
    parts = seg.get("parts", [])
    out = ["embed"] if "embed" in parts else []
    if seg["end"] > seg["start"]:
        out.append(f"L{seg['start']}" + (f"-{seg['end'] - 1}" if seg["end"] - seg["start"] > 1
                                         else ""))
    out += ["head"] if "head" in parts else []
    return " + ".join(out) or "no layers"


def plan_png(path: str | Path, out: dict[str, Any], cluster: Any) -> None:
    """One row per route: the nodes in ring order, each with the layers it
    runs, arrows for the hops (with their link's bandwidth and RTT) and the
    return to the entry drawn below. ``out`` is ``edgesplit plan --json``'s
    document, ``cluster`` the ``ClusterState`` it was planned for."""
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    plt = _pyplot()
    routes = out["plan"]["routes"] if out.get("plan") else []
    nodes = {n.node_id: n for n in cluster.nodes}
    links = {(lk.src, lk.dst): lk for lk in cluster.links}
    width = max([len(r["segments"]) for r in routes] + [1])
    fig, ax = plt.subplots(figsize=(max(6.0, 3.0 * width), 1.2 + 2.6 * max(1, len(routes))))
    box_w, box_h = 2.0, 1.1

    def hop(ax: Any, a: tuple[float, float], b: tuple[float, float], src: str, dst: str,
            rad: float) -> None:
        ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=14, lw=1.4,
                                     color="#555", connectionstyle=f"arc3,rad={rad}"))
        lk = links.get((src, dst))
        text = "no link" if lk is None else f"{_bps(lk.bandwidth_bps)}\n{lk.rtt_s * 1e3:.3g} ms"
        mid = ((a[0] + b[0]) / 2, (a[1] + b[1]) / 2 + (-0.6 if rad else 0.08))
        ax.text(*mid, text, ha="center", va="top" if rad else "bottom", fontsize=7.5,
                color="#333")

    for r_i, route in enumerate(routes):
        y = -r_i * 2.6
        ax.text(-0.2, y + box_h / 2 + 0.25, f"route of {route['entry']}", fontsize=9,
                weight="bold")
        xs = []
        for s_i, seg in enumerate(route["segments"]):
            x = s_i * 3.0
            xs.append(x)
            node = nodes.get(seg["node"])
            trusted = node is not None and node.trust.name == "TRUSTED"
            ax.add_patch(FancyBboxPatch((x, y - box_h / 2), box_w, box_h,
                                        boxstyle="round,pad=0.05", lw=1.2,
                                        ec="#2a6" if trusted else "#c63",
                                        fc="#e8f6ec" if trusted else "#fbeee6"))
            speed = f"{node.flops_per_s / 1e12:.3g} TFLOP/s" if node else ""
            ax.text(x + box_w / 2, y + 0.22, seg["node"], ha="center", fontsize=9,
                    weight="bold")
            ax.text(x + box_w / 2, y - 0.05, _segment_label(seg), ha="center", fontsize=8)
            ax.text(x + box_w / 2, y - 0.32, f"{'trusted' if trusted else 'untrusted'}"
                    f"{', ' + speed if speed else ''}", ha="center", fontsize=7, color="#555")
        segs = route["segments"]
        for s_i in range(len(segs) - 1):
            hop(ax, (xs[s_i] + box_w, y), (xs[s_i + 1], y), segs[s_i]["node"],
                segs[s_i + 1]["node"], 0.0)
        if segs and segs[-1]["node"] != route["entry"]:  # the ring closes at the entry
            hop(ax, (xs[-1] + box_w / 2, y - box_h / 2), (box_w / 2, y - box_h / 2),
                segs[-1]["node"], route["entry"], -0.25)
    used = {s["node"] for r in routes for s in r["segments"]}
    idle = [n for n in nodes if n not in used]
    cost = out.get("cost") or {}
    title = f"plan for {out.get('model', '?')}"
    if cost.get("latency_s") is not None:
        title += (f": decode step {_ms(cost['latency_s'])}, TTFT {_ms(cost['ttft_s'])} "
                  f"({out.get('method', '')})")
    if not routes:
        title += f": no plan ({out.get('reason', '')})"
    ax.set_title(title, fontsize=10)
    if idle:
        ax.text(0, -(len(routes) - 1) * 2.6 - 1.55, "not used: " + ", ".join(idle), fontsize=8,
                color="#555")
    ax.set_xlim(-0.4, 3.0 * width - 0.6)
    ax.set_ylim(-(max(1, len(routes)) - 1) * 2.6 - 1.75, 1.4)
    ax.set_aspect("equal")
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def solve_time_png(path: str | Path, families: Sequence[tuple[int, int, list[float]]]) -> None:
    """Every instance's solve time against its node count (families also
    differ in layers: labelled), with the median and p95 per family."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    xs, med, p95 = [], [], []
    for nodes, layers, times in families:
        if not times:
            continue
        ax.scatter([nodes] * len(times), times, s=12, alpha=0.35, color="#36c")
        s = sorted(times)
        xs.append(nodes)
        med.append(statistics.median(s))
        p95.append(s[min(len(s) - 1, round(0.95 * (len(s) - 1)))])
        runs = f"{len(times)} run" + ("s" if len(times) != 1 else "")
        ax.annotate(f"{layers} layers, {runs}", (nodes, max(times)),
                    textcoords="offset points", xytext=(4, 6), fontsize=7.5)
    ax.plot(xs, med, "-o", color="#36c", label="median")
    ax.plot(xs, p95, "--s", color="#c63", label="p95")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(xs, [str(x) for x in xs])
    if xs:
        ax.set_xlim(min(xs) / 1.4, max(xs) * 2.2)  # room for the labels
    ax.set_xlabel("nodes in the cluster")
    ax.set_ylabel("planner solve time (ms)")
    ax.set_title("edgesplit planner: solve time against cluster size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
