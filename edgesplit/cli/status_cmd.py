"""``edgesplit status --monitor ADDR [--json] [--watch]`` — the cluster as the control plane sees it.

Each source of status is a :class:`Section`: a flag naming its address, a
``fetch`` that returns plain JSON-able data, and a ``render`` that turns that
data into rich tables that fit the terminal (80 columns when piped). ``--json`` prints ``{section: data}``; ``--watch``
repeats every ``--interval`` seconds (one JSON document per line with
``--json``). To add a source (say ``--orchestrator``), append a ``Section`` to
``SECTIONS``: flags, JSON and refresh come with it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edgesplit.cli.common import add_tls_arguments, testbed_identity, transport

Data = dict[str, Any]


@dataclass(frozen=True)
class Connection:
    """How to reach a service: deadline and the CLI's transport, shared by all sections."""

    timeout_s: float
    transport: Any  # edgesplit.rpc.transport.Transport (imported lazily: fast --help)

    def channel(self, address: str) -> Any:
        return self.transport.sync_channel(address)


@dataclass(frozen=True)
class Section:
    name: str  # key in the JSON output and argparse dest
    flag: str
    help: str
    fetch: Callable[[str, Connection], Data]
    render: Callable[[str, Data], list[Any]]  # rich renderables


# ---- monitor ------------------------------------------------------------------------
def _opt(x: float) -> float | None:
    """Proto3 0 for "not measured" -> None."""
    return x if x else None


def monitor_data(msg: Any) -> Data:
    """An ``EnvironmentState`` message as plain data (None where nothing was measured)."""
    from edgesplit.core.types import Part
    from edgesplit.rpc.convert import layer_ref_from_proto

    nodes = []
    for v in msg.nodes:
        s = v.state
        keyed = sorted(((layer_ref_from_proto(t.layer, "layers"), t) for t in v.layers),
                       key=lambda kt: kt[0])
        layers = [{"layer": k.value if isinstance(k, Part) else k,
                   "prefill_s_per_token": _opt(t.prefill_s_per_token),
                   "decode_s_per_token": _opt(t.decode_s_per_token)}
                  for k, t in keyed]
        heard = v.reports > 0
        nodes.append({
            "node": s.node_id, "alive": s.alive, "trust": "trusted" if s.trust else "untrusted",
            "address": s.address, "reports": v.reports,
            "last_seen_age_s": v.last_seen_age_s if heard else None,
            "cpu_utilization": v.cpu_utilization if heard else None,
            "gpu_utilization": v.gpu_utilization if v.has_gpu else None,
            "memory_used_bytes": v.memory_used_bytes if heard else None,
            "memory_total_bytes": v.memory_total_bytes or s.memory_bytes,
            "queue_depth": v.queue_depth, "active_sessions": v.active_sessions_avg,
            "own_load": v.own_load, "committed_epoch": v.committed_epoch,
            "prefill_s_per_token": _opt(sum(t.prefill_s_per_token for t in v.layers)),
            "decode_s_per_token": _opt(sum(t.decode_s_per_token for t in v.layers)),
            "layers": layers,
        })
    links = [{"src": lk.src, "dst": lk.dst, "rtt_s": _opt(lk.rtt_s),
              "bandwidth_bps": _opt(lk.bandwidth_bps), "source": lk.source, "age_s": lk.age_s,
              "samples": lk.samples} for lk in msg.link_views]
    return {
        "at": msg.at, "version": msg.version, "report_interval_s": msg.report_interval_s,
        "dead_after_s": msg.dead_after_s, "latency_ewma_s": _opt(msg.latency_ewma_s),
        "ttft_ewma_s": _opt(msg.ttft_ewma_s),
        "sla_hit_rate": msg.sla_hit_rate if msg.window_requests else None,
        "window_requests": msg.window_requests, "requests_total": msg.requests_total,
        "reports": {"accepted": msg.reports_accepted, "stale": msg.reports_stale,
                    "refused": dict(sorted(msg.reports_refused.items()))},
        "nodes": nodes, "links": links,
    }


def fetch_monitor(address: str, conn: Connection) -> Data:
    from edgesplit.v1 import monitor_pb2, monitor_pb2_grpc

    with conn.channel(address) as ch:
        msg = monitor_pb2_grpc.MonitorStub(ch).GetState(monitor_pb2.GetStateRequest(),
                                                        timeout=conn.timeout_s)
    return monitor_data(msg)


def _ms(s: float | None) -> str:
    return "-" if s is None else f"{s * 1e3:.2f} ms" if s < 0.1 else f"{s * 1e3:.0f} ms"


def _per_token_ms(s: float | None) -> str:
    return "-" if s is None else f"{s * 1e3:.2f}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.0f}%"


def _bytes(n: float | None) -> str:
    return "-" if n is None else f"{n / 2**30:.1f}G"  # GiB


def _bps(x: float | None) -> str:
    if x is None:
        return "-"
    for unit, scale in (("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if x >= scale:
            return f"{x / scale:.1f} {unit}"
    return f"{x:.0f} bit/s"


def _table(headers: list[str], rows: list[list[str]], *, right: int = 1,
           flexible: int = 0) -> Any:
    """A rich table sized to the console (80 columns when not a terminal): no
    box, one space between columns; columns from ``right`` on are numbers.
    Only the ``flexible`` column gives way when space is short (its text
    folds onto more lines inside the cell); the others keep their width."""
    from rich import box
    from rich.table import Table

    t = Table(box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), pad_edge=False, show_edge=False,
              header_style="bold")
    for i, h in enumerate(headers):
        if i == flexible:  # wraps inside its cell; rich shrinks wrapping columns first
            t.add_column(h, overflow="fold")
        else:
            t.add_column(h, justify="right" if i >= right else "left", no_wrap=True)
    for r in rows:
        t.add_row(*r)
    return t


def render_monitor(address: str, d: Data) -> list[Any]:
    from rich.text import Text

    refused = sum(d["reports"]["refused"].values())
    sla = "-" if d["sla_hit_rate"] is None else f"{d['sla_hit_rate'] * 100:.0f}%"
    head = Text.assemble(
        (f"monitor {address}", "bold"),
        f"  E(t) v{d['version']}  latency {_ms(d['latency_ewma_s'])}  "
        f"TTFT {_ms(d['ttft_ewma_s'])}  SLA {sla} of {d['window_requests']}  reports "
        f"{d['reports']['accepted']} ok / {d['reports']['stale']} stale / {refused} refused")
    gpu = any(n["gpu_utilization"] is not None for n in d["nodes"])  # a column only if used
    headers = ["NODE", "ALIVE", "AGE", "CPU", *(["GPU"] if gpu else []), "MEM GiB", "QUEUE",
               "SESS", "EPOCH", "DEC ms", "LOAD"]  # prefill per token: in --json
    rows = []
    for n in d["nodes"]:
        age = "never" if n["last_seen_age_s"] is None else f"{n['last_seen_age_s']:.1f}s"
        used, total = n["memory_used_bytes"], n["memory_total_bytes"]
        mem = f"{'-' if used is None else f'{used / 2**30:.1f}'}/{total / 2**30:.0f}"
        rows.append([n["node"], "yes" if n["alive"] else "DEAD", age, _pct(n["cpu_utilization"]),
                     *([_pct(n["gpu_utilization"])] if gpu else []), mem,
                     f"{n['queue_depth']:.1f}", f"{n['active_sessions']:.0f}",
                     str(n["committed_epoch"]), _per_token_ms(n["decode_s_per_token"]),
                     _pct(n["own_load"])])
    out: list[Any] = [head, _table(headers, rows, right=2)]
    if d["links"]:
        rows = [[f"{lk['src']}->{lk['dst']}", _ms(lk["rtt_s"]), _bps(lk["bandwidth_bps"]),
                 lk["source"], f"{lk['age_s']:.1f}s"] for lk in d["links"]]
        out.append(_table(["LINK", "RTT", "BANDWIDTH", "SOURCE", "AGE"], rows))
    return out


# ---- orchestrator ---------------------------------------------------------------------
def fetch_orchestrator(address: str, conn: Connection) -> Data:
    from google.protobuf.json_format import MessageToDict

    from edgesplit.v1 import orchestrator_pb2 as pb
    from edgesplit.v1 import orchestrator_pb2_grpc as pb_grpc

    with conn.channel(address) as ch:
        stub = pb_grpc.OrchestratorStub(ch)
        status = stub.Status(pb.StatusRequest(), timeout=conn.timeout_s)
        history = stub.History(pb.HistoryRequest(limit=10), timeout=conn.timeout_s)
    return {"status": _ints(MessageToDict(status, preserving_proto_field_name=True)),
            "history": [_ints(MessageToDict(d, preserving_proto_field_name=True))
                        for d in history.decisions]}


_UINT64 = {"epoch", "old_epoch", "new_epoch", "id"}


def _ints(d: Any) -> Any:
    """Protobuf's JSON writes 64-bit integers as strings; epochs and ids read
    better (and compare) as numbers."""
    if isinstance(d, dict):
        return {k: int(v) if k in _UINT64 and isinstance(v, str) else _ints(v)
                for k, v in d.items()}
    if isinstance(d, list):
        return [_ints(x) for x in d]
    return d


def render_orchestrator(address: str, d: Data) -> list[Any]:
    from rich.text import Text

    st = d["status"]
    plan = st.get("plan", {})
    out: list[Any] = [Text.assemble(
        (f"orchestrator {address}", "bold"),
        f"  epoch {plan.get('epoch', 0)}  cool-down left {st.get('cooldown_left_s', 0):.1f} s")]
    for route in plan.get("routes", []):
        segs = " -> ".join(f"{s.get('node_id')}[{s.get('start', 0)},{s.get('end', 0)})"
                           for s in route.get("segments", []))
        out.append(Text(f"  route of {route.get('entry')}: {segs} -> {route.get('entry')}"))
    counts = st.get("reconfigurations", {})
    if counts:
        rows = [[k, str(v)] for k, v in sorted(counts.items())]
        out.append(_table(["RECONFIGURED BY", "TIMES"],
                          [*rows, ["total", str(sum(counts.values()))]]))
    else:
        out.append(Text("  reconfigurations: none yet"))
    rows = [[str(dec.get("id", "")), ",".join(dec.get("triggers", [])) or "-",
             dec.get("action", ""), dec.get("outcome", ""),
             f"{dec.get('old_epoch', 0)}->{dec.get('new_epoch', 0)}",
             _ms(dec.get("trigger_to_commit_s")), dec.get("detail", "")[:40]]
            for dec in d["history"]]
    if rows:
        out.append(_table(["ID", "TRIGGERS", "ACTION", "OUTCOME", "EPOCH", "COMMIT", "DETAIL"],
                          rows, right=5, flexible=6))
    return out


SECTIONS: list[Section] = [
    Section("orchestrator", "--orchestrator", "orchestrator address host:port: plan in "
            "force, cool-down, recent decisions", fetch_orchestrator, render_orchestrator),
    Section("monitor", "--monitor", "monitor address host:port: nodes, links, latencies",
            fetch_monitor, render_monitor),
]


# ---- command ----------------------------------------------------------------------------
def register(sub: Any) -> None:
    p = sub.add_parser("status", help="show the monitor's view of the cluster")
    for s in SECTIONS:
        p.add_argument(s.flag, dest=s.name, default="", help=s.help)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--watch", action="store_true", help="refresh every --interval seconds")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes")
    p.add_argument("--timeout", type=float, default=5.0, help="deadline of each call, seconds")
    p.add_argument("--testbed-dir", default="var/testbed",
                   help="without TLS flags: call with this test bed's admin certificate, "
                        "if it has one")
    add_tls_arguments(p)
    p.set_defaults(handler=_status)


def collect(args: argparse.Namespace, conn: Connection) -> tuple[Data, bool]:
    """``{section: data or {"error": ...}}`` for every section given, and whether all answered."""
    import grpc

    out: Data = {}
    ok = True
    for s in SECTIONS:
        address = getattr(args, s.name, "")
        if not address:
            continue
        try:
            out[s.name] = s.fetch(address, conn)
        except grpc.RpcError as exc:
            ok = False
            out[s.name] = {"error": f"{exc.code().name}: {exc.details()}"}
    return out, ok


def _print(args: argparse.Namespace, data: Data, clear: bool) -> None:
    if args.json:
        print(json.dumps(data, indent=None if args.watch else 2), flush=True)
        return
    from rich.console import Console
    from rich.text import Text

    parts: list[Any] = []
    if args.watch:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime())
        parts.append(Text(f"edgesplit status  {stamp}  every {args.interval:g} s "
                          "(Ctrl-C stops)", style="dim"))
    for s in SECTIONS:
        d = data.get(s.name)
        if d is None:
            continue
        address = getattr(args, s.name)
        parts += [Text(f"{s.name} {address}: {d['error']}")] if "error" in d else \
            s.render(address, d)
        parts.append(Text(""))
    console = Console(highlight=False, soft_wrap=False)
    if clear:
        console.clear()  # home + clear: the table refreshes in place
    for part in parts[:-1] if parts else parts:
        console.print(part)


def _status(args: argparse.Namespace) -> int:
    if not any(getattr(args, s.name, "") for s in SECTIONS):
        print("give at least one of " + ", ".join(s.flag for s in SECTIONS), file=sys.stderr)
        return 2
    if args.interval <= 0:
        print("--interval must be > 0", file=sys.stderr)
        return 2
    conn = Connection(args.timeout, transport(args, testbed_identity(args.testbed_dir, "admin")))
    clear = args.watch and not args.json and sys.stdout.isatty()
    try:
        while True:
            data, ok = collect(args, conn)
            _print(args, data, clear)
            if not args.watch:
                return 0 if ok else 1
            time.sleep(args.interval)  # a plain sleep: one call per refresh, no busy loop
    except KeyboardInterrupt:
        return 0
