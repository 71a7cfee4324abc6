"""Monitor messages <-> core values (docs/architecture.md §10.4): node reports one way,
E(t) both ways.

Times are ``Timestamp`` / ``Duration`` on the wire and float seconds in the
core. "Not measured" is an absent time (a Duration is a message, so it has
presence) or a rate of 0, as ``monitor.proto`` says per field; core values use
``None`` for it; the functions here translate between the two.

Clocks: the monitor's core runs on its own monotonic clock; a state message
carries wall time (``at``) and *ages* (time since), never monotonic
instants, so a reader on another machine can rebuild instants as ``at - age``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from types import MappingProxyType

from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message

from edgesplit.core.environment import EnvironmentState, LayerTimes, LinkEnv, NodeEnv
from edgesplit.core.inventory import NodeInventory
from edgesplit.core.reports import (
    GpuSample,
    LinkObservation,
    LinkSource,
    NodeReport,
    RequestSample,
    ResourceSample,
)
from edgesplit.core.types import (
    ClusterState,
    LayerKey,
    LinkState,
    ModelProfile,
    NodeId,
    NodeState,
    Trust,
)
from edgesplit.rpc.convert import (
    ConversionError,
    EnumCodec,
    duration,
    layer_ref_from_proto,
    layer_ref_to_proto,
    link_to_proto,
    node_from_proto,
    node_to_proto,
    profile_to_proto,
    seconds,
    timestamp,
    unix_seconds,
)
from edgesplit.v1 import monitor_pb2 as mpb

SOURCES = EnumCodec(LinkSource, mpb.LinkSource, "LINK_SOURCE_")

LayerPairs = tuple[tuple[LayerKey, float], ...]


# ---- layer tables ---------------------------------------------------------------
def timings_to_proto(prefill: LayerPairs, decode: LayerPairs) -> list[mpb.LayerTiming]:
    """One ``LayerTiming`` per layer that has either figure (0 for the missing one)."""
    merged: dict[LayerKey, list[float]] = {}
    for layer, s in prefill:
        merged.setdefault(layer, [0.0, 0.0])[0] = s
    for layer, s in decode:
        merged.setdefault(layer, [0.0, 0.0])[1] = s
    out = []
    for layer in sorted(merged):
        p, d = merged[layer]
        out.append(mpb.LayerTiming(layer=layer_ref_to_proto(layer),
                                   prefill_s_per_token=p, decode_s_per_token=d))
    return out


def timings_from_proto(items: Iterable[mpb.LayerTiming], field: str) -> tuple[LayerPairs, LayerPairs]:
    prefill: list[tuple[LayerKey, float]] = []
    decode: list[tuple[LayerKey, float]] = []
    for i, t in enumerate(items):
        layer = layer_ref_from_proto(t.layer, f"{field}[{i}].layer")
        if t.prefill_s_per_token:
            prefill.append((layer, t.prefill_s_per_token))
        if t.decode_s_per_token:
            decode.append((layer, t.decode_s_per_token))
    return tuple(sorted(prefill)), tuple(sorted(decode))


def _opt(x: float) -> float | None:
    return x if x else None


def _time(d: float | None) -> Duration | None:
    """A measured time for the wire; None (not measured) stays absent."""
    return None if d is None else duration(max(0.0, d))


def _measured(m: Message, name: str, field: str) -> float | None:
    return seconds(getattr(m, name), f"{field}.{name}") if m.HasField(name) else None


def report_reason(name: str) -> mpb.ReportReason:
    """A refusal reason (the label the metrics and E(t)'s counts use) for the wire."""
    return mpb.ReportReason.Value(f"REPORT_REASON_{name.upper()}")


def report_reason_name(value: int) -> str:
    return mpb.ReportReason.Name(value).removeprefix("REPORT_REASON_").lower()


# ---- NodeReport -------------------------------------------------------------------
def report_to_proto(r: NodeReport, committed_epoch: int = 0) -> mpb.ReportRequest:
    res = r.resources
    msg = mpb.ReportRequest(
        node_id=r.node_id, seq=r.seq, sent_at=timestamp(r.now), incarnation=r.incarnation,
        cpu_utilization=res.cpu_utilization, memory_used_bytes=res.memory_used_bytes,
        memory_total_bytes=res.memory_total_bytes, queue_depth=res.queue_depth,
        active_sessions=res.active_sessions, compute_busy=duration(r.compute_busy_s),
        committed_epoch=committed_epoch,
        layers=timings_to_proto(r.prefill_layer_s, r.decode_layer_s),
        bytes_sent=dict(r.activation_bytes),
        requests=[mpb.RequestSample(ttft=duration(q.ttft_s),
                                    steps=[duration(s) for s in q.step_latencies_s],
                                    sla_met=bool(q.sla_met)) for q in r.requests],
        links=[mpb.LinkObservation(peer=o.peer, rtt=_time(o.rtt_s),
                                   bandwidth_bps=o.bandwidth_bps or 0.0,
                                   source=SOURCES.encode(o.source))
               for o in r.links])
    if res.gpu is not None:
        msg.has_gpu = True
        msg.gpu_utilization = res.gpu.utilization
        msg.gpu_memory_used_bytes = res.gpu.memory_used_bytes
        msg.gpu_memory_total_bytes = res.gpu.memory_total_bytes
    return msg


def report_from_proto(m: mpb.ReportRequest) -> NodeReport:
    """Structure only; value checks (ranges, NaN) are ``NodeReport.problem``'s job."""
    if not m.node_id:
        raise ConversionError("report.node_id", "empty")
    gpu = (GpuSample(m.gpu_utilization, m.gpu_memory_used_bytes, m.gpu_memory_total_bytes)
           if m.has_gpu else None)
    prefill, decode = timings_from_proto(m.layers, "report.layers")
    links = []
    for i, o in enumerate(m.links):
        if not o.peer:
            raise ConversionError(f"report.links[{i}].peer", "empty")
        where = f"report.links[{i}]"
        links.append(LinkObservation(NodeId(o.peer), _measured(o, "rtt", where),
                                     _opt(o.bandwidth_bps),
                                     SOURCES.decode(o.source, f"{where}.source",
                                                    LinkSource.PASSIVE)))
    return NodeReport(
        node_id=NodeId(m.node_id), seq=m.seq, now=unix_seconds(m.sent_at),
        incarnation=m.incarnation,
        resources=ResourceSample(m.cpu_utilization, m.memory_used_bytes, m.memory_total_bytes,
                                 gpu, m.queue_depth, m.active_sessions),
        prefill_layer_s=prefill, decode_layer_s=decode,
        activation_bytes=tuple((NodeId(k), v) for k, v in sorted(m.bytes_sent.items())),
        compute_busy_s=seconds(m.compute_busy, "report.compute_busy"),
        # sla_met travels as a plain bool: the agent always judges its requests.
        requests=tuple(RequestSample(seconds(q.ttft, f"report.requests[{i}].ttft"),
                                     tuple(seconds(s, f"report.requests[{i}].steps")
                                           for s in q.steps), q.sla_met)
                       for i, q in enumerate(m.requests)),
        links=tuple(links))


# ---- EnvironmentState ---------------------------------------------------------------
def default_node_state(node_id: NodeId, memory_bytes: int = 0,
                       flops_per_s: float = 1e9) -> NodeState:
    """Planner view of a node enrolled without an inventory entry (open enrolment,
    dev only): untrusted, with the memory it reports and a guessed speed that
    its measured per-layer times replace."""
    return NodeState(node_id, Trust.UNTRUSTED, memory_bytes, flops_per_s)


def _node_view(env: NodeEnv, state: NodeState, now: float, epoch: int) -> mpb.NodeView:
    return mpb.NodeView(
        state=node_to_proto(state),
        last_seen_age=None if env.last_seen is None else duration(max(0.0, now - env.last_seen)),
        reports=env.reports, cpu_utilization=env.cpu_utilization,
        gpu_utilization=env.gpu_utilization or 0.0, has_gpu=env.gpu_utilization is not None,
        memory_used_bytes=round(env.memory_used_bytes),
        memory_total_bytes=env.memory_total_bytes,
        gpu_memory_used_bytes=round(env.gpu_memory_used_bytes or 0),
        gpu_memory_total_bytes=env.gpu_memory_total_bytes or 0,
        queue_depth=env.queue_depth, active_sessions=round(env.active_sessions),
        active_sessions_avg=env.active_sessions, own_load=env.own_load,
        layers=timings_to_proto(env.prefill.pairs(), env.decode.pairs()),
        decode_background=env.decode_background,
        hop_bytes_per_s=dict(env.hop_bytes_per_s), committed_epoch=epoch)


def link_view_to_proto(lk: LinkEnv, now: float) -> mpb.LinkView:
    return mpb.LinkView(src=lk.src, dst=lk.dst, rtt=_time(lk.rtt_s),
                        bandwidth_bps=lk.bandwidth_bps or 0.0, source=SOURCES.encode(lk.source),
                        age=duration(max(0.0, now - lk.last_seen)), samples=lk.samples)


def state_to_proto(env: EnvironmentState, inventory: NodeInventory, *, version: int,
                   wall_time: float, report_interval_s: float, dead_after_s: float,
                   profile: ModelProfile | None = None,
                   committed_epochs: Mapping[NodeId, int] | None = None,
                   ) -> mpb.EnvironmentState:
    """E(t) for the wire: inventory order first, then nodes enrolled without an entry."""
    epochs = committed_epochs or {}
    measured = env.measured_profile(profile, inventory) if profile is not None else None
    cluster = env.to_cluster_state(inventory, profile=measured)  # node speeds calibrated
    states = {n.node_id: n for n in cluster.nodes}
    views = []
    for node_id in (*inventory.ids, *(n for n in env.nodes if n not in inventory)):
        node = env.nodes.get(node_id)
        if node is None:  # in the inventory, not (yet) enrolled with this monitor
            node = NodeEnv(node_id=node_id, alive=False, last_seen=None)
        state = states.get(node_id) or default_node_state(node_id, node.memory_total_bytes)
        views.append(_node_view(node, state, env.now, epochs.get(node_id, 0)))
    msg = mpb.EnvironmentState(
        at=timestamp(wall_time), version=version, nodes=views,
        links=[link_to_proto(lk) for lk in cluster.links],
        link_views=[link_view_to_proto(lk, env.now) for lk in env.iter_links()],
        latency_ewma=_time(env.latency_ewma_s), ttft_ewma=_time(env.ttft_ewma_s),
        sla_hit_rate=env.sla_hit_rate or 0.0, window_requests=env.sla_window_requests,
        requests_total=env.requests_total, sla_hits_total=env.sla_hits_total,
        reports_accepted=env.reports_accepted, reports_stale=env.reports_stale,
        reports_refused=dict(env.reports_refused),
        report_interval=duration(report_interval_s), dead_after=duration(dead_after_s))
    if measured is not None:
        msg.profile.CopyFrom(profile_to_proto(measured))
    return msg


def _node_env_from_proto(v: mpb.NodeView, at: float, links: tuple[LinkEnv, ...],
                         field: str) -> NodeEnv:
    prefill, decode = timings_from_proto(v.layers, f"{field}.layers")
    return NodeEnv(
        node_id=NodeId(v.state.node_id), alive=v.state.alive,
        last_seen=at - seconds(v.last_seen_age, f"{field}.last_seen_age") if v.reports else None,
        reports=v.reports,
        cpu_utilization=v.cpu_utilization, memory_used_bytes=float(v.memory_used_bytes),
        memory_total_bytes=v.memory_total_bytes,
        gpu_utilization=v.gpu_utilization if v.has_gpu else None,
        gpu_memory_used_bytes=float(v.gpu_memory_used_bytes) if v.has_gpu else None,
        gpu_memory_total_bytes=v.gpu_memory_total_bytes if v.has_gpu else None,
        queue_depth=v.queue_depth, active_sessions=v.active_sessions_avg, own_load=v.own_load,
        prefill=_times(prefill), decode=_times(decode), decode_background=v.decode_background,
        hop_bytes_per_s=tuple((NodeId(k), x) for k, x in sorted(v.hop_bytes_per_s.items())),
        links=links)


def _times(pairs: LayerPairs) -> LayerTimes:
    return LayerTimes(tuple(k for k, _ in pairs), tuple(s for _, s in pairs))


def environment_from_proto(m: mpb.EnvironmentState) -> EnvironmentState:
    """E(t) back from the wire, with ``now = m.at`` (wall clock) and instants ``at - age``."""
    at = unix_seconds(m.at)
    by_src: dict[str, list[LinkEnv]] = {}
    for i, lv in enumerate(m.link_views):
        where = f"state.link_views[{i}]"
        by_src.setdefault(lv.src, []).append(LinkEnv(
            NodeId(lv.src), NodeId(lv.dst), _measured(lv, "rtt", where), _opt(lv.bandwidth_bps),
            SOURCES.decode(lv.source, f"{where}.source", LinkSource.PASSIVE),
            at - seconds(lv.age, f"{where}.age"), lv.samples))
    nodes: dict[NodeId, NodeEnv] = {}
    for i, v in enumerate(m.nodes):
        if not v.state.node_id:
            raise ConversionError(f"state.nodes[{i}].state.node_id", "empty")
        nodes[NodeId(v.state.node_id)] = _node_env_from_proto(
            v, at, tuple(by_src.get(v.state.node_id, ())), f"state.nodes[{i}]")
    window = m.window_requests
    return EnvironmentState(
        now=at, nodes=MappingProxyType(nodes),
        latency_ewma_s=_measured(m, "latency_ewma", "state"),
        ttft_ewma_s=_measured(m, "ttft_ewma", "state"),
        sla_hit_rate=m.sla_hit_rate if window else None,
        sla_window_requests=window, requests_total=m.requests_total,
        sla_hits_total=m.sla_hits_total, reports_accepted=m.reports_accepted,
        reports_stale=m.reports_stale,
        reports_refused=tuple(sorted(m.reports_refused.items())))


def inventory_from_state_proto(m: mpb.EnvironmentState) -> NodeInventory:
    """The static part of each node (trust, memory, speed, trusted_by, address).

    Measured per-layer times are left out: they belong to E(t)
    (``environment_from_proto``), which overlays them again in ``to_cluster_state``.
    """
    return NodeInventory(tuple(
        replace(node_from_proto(v.state, f"state.nodes[{i}].state"), layer_seconds=(),
                utilization=0.0, alive=True)
        for i, v in enumerate(m.nodes)))


def cluster_from_state_proto(m: mpb.EnvironmentState) -> ClusterState:
    """The planner's input exactly as the monitor computed it (embed and head included)."""
    return ClusterState(
        tuple(node_from_proto(v.state, f"state.nodes[{i}].state") for i, v in enumerate(m.nodes)),
        tuple(LinkState(NodeId(lk.src), NodeId(lk.dst), lk.rtt_s, lk.bandwidth_bps)
              for lk in m.links))

