"""E(t): the monitor's smoothed view of the cluster at one instant.

Everything here is frozen. A snapshot shares each node's ``NodeEnv`` with the
previous snapshot unless that node reported (or changed liveness) in between,
which is what keeps a snapshot of a thousand nodes cheap: it copies a dict of
references, it does not rebuild per-node tables.
"""

from __future__ import annotations

import bisect
import statistics
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace

from edgesplit.core.cost import free_share
from edgesplit.core.inventory import NodeInventory
from edgesplit.core.reports import LinkSource
from edgesplit.core.types import (
    ClusterState,
    LayerCost,
    LayerKey,
    LinkState,
    ModelProfile,
    NodeId,
    NodeState,
    Part,
)


@dataclass(frozen=True, slots=True)
class LayerTimes:
    """Seconds per token by layer key: two parallel tuples, sorted by layer
    (``Part.EMBED`` first, then the decoder layers, ``Part.HEAD`` last).

    Parallel tuples rather than ``(layer, seconds)`` pairs because the layer
    tuple of a node is shared from report to report: each report then costs
    one new tuple of floats, not one pair per layer, and a monitor of a
    thousand nodes rebuilds thousands of these a second.
    """

    layers: tuple[LayerKey, ...] = ()
    seconds: tuple[float, ...] = ()

    def pairs(self) -> tuple[tuple[LayerKey, float], ...]:
        """The ``NodeState.layer_seconds`` form."""
        return tuple(zip(self.layers, self.seconds, strict=True))

    def get(self, layer: LayerKey) -> float | None:
        i = bisect.bisect_left(self.layers, layer)
        if i < len(self.layers) and self.layers[i] == layer:
            return self.seconds[i]
        return None

    def __len__(self) -> int:
        return len(self.layers)


NO_LAYER_TIMES = LayerTimes()


def background_load(compute_utilization: float, own_load: float) -> float:
    """Load on a node not caused by our own segments (``NodeEnv.background_utilization``)."""
    return min(1.0, max(0.0, compute_utilization - own_load))


@dataclass(frozen=True, slots=True)
class LinkAssumption:
    """Figures assumed for a link between two live nodes that nobody has measured yet."""

    rtt_s: float = 0.01
    bandwidth_bps: float = 100e6


def complete_links(cluster: ClusterState, assume: LinkAssumption | None) -> tuple[ClusterState, int]:
    """The one rule for unmeasured links: between two live nodes, ``assume``
    stands in for a link without both figures measured (so the planner may
    still route over it); with ``assume=None`` such a link stays absent.

    Returns the completed cluster and how many directed links were missing.
    Linear in the links unless links are assumed (then quadratic in live nodes).
    """
    alive = [n.node_id for n in cluster.nodes if n.alive]
    live = set(alive)
    have = {(lk.src, lk.dst) for lk in cluster.links
            if lk.src != lk.dst and lk.src in live and lk.dst in live}
    missing = len(alive) * (len(alive) - 1) - len(have)
    if assume is None or not missing:
        return cluster, missing
    extra = tuple(LinkState(a, b, assume.rtt_s, assume.bandwidth_bps)
                  for a in alive for b in alive if a != b and (a, b) not in have)
    return replace(cluster, links=(*cluster.links, *extra)), missing


@dataclass(frozen=True, slots=True)
class LinkEnv:
    """Smoothed figures of the directed link ``src -> dst`` as ``src`` observed it.

    ``None`` until the first sample of that figure arrives.
    """

    src: NodeId
    dst: NodeId
    rtt_s: float | None
    bandwidth_bps: float | None
    source: LinkSource  # how the latest sample was obtained
    last_seen: float  # monitor time of the latest sample
    samples: int


@dataclass(frozen=True, slots=True)
class NodeEnv:
    """One node's smoothed figures (EWMA of each reported metric).

    Numbers are 0 / empty until ``reports > 0``; GPU fields stay ``None`` on
    nodes that report no GPU. Layer tables hold the layers this node has run.
    """

    node_id: NodeId
    alive: bool
    last_seen: float | None  # monitor time of the last accepted report
    reports: int = 0
    cpu_utilization: float = 0.0
    memory_used_bytes: float = 0.0
    memory_total_bytes: int = 0
    gpu_utilization: float | None = None
    gpu_memory_used_bytes: float | None = None
    gpu_memory_total_bytes: int | None = None
    queue_depth: float = 0.0
    active_sessions: float = 0.0
    own_load: float = 0.0  # fraction of wall time spent computing our segments
    prefill: LayerTimes = NO_LAYER_TIMES
    decode: LayerTimes = NO_LAYER_TIMES
    # Background utilisation while ``decode`` was measured (EWMA over the
    # reports that carried decode times): a layer time measured before an
    # overload is not what that layer costs during it (``measured_free``).
    decode_background: float = 0.0
    hop_bytes_per_s: tuple[tuple[NodeId, float], ...] = ()
    links: tuple[LinkEnv, ...] = ()

    @property
    def peak_utilization(self) -> float:
        """The busier of CPU and GPU: what the utilisation trigger watches."""
        if self.gpu_utilization is None:
            return self.cpu_utilization
        return max(self.cpu_utilization, self.gpu_utilization)

    @property
    def compute_utilization(self) -> float:
        """Utilisation of the device the segments run on (the GPU when there is one)."""
        return self.cpu_utilization if self.gpu_utilization is None else self.gpu_utilization

    @property
    def background_utilization(self) -> float:
        """Load not caused by our own segments, which the planner adds its plan's load to.

        An estimate: our busy fraction is wall time inside the segment runner,
        which on a GPU is close to, not exactly, the NVML busy fraction.
        """
        return background_load(self.compute_utilization, self.own_load)

    @property
    def free_share(self) -> float:
        """The share of the node our segments get now (the cost model's rule)."""
        return free_share(self.background_utilization)

    @property
    def measured_free(self) -> float:
        """The share our segments got while ``decode`` was measured."""
        return free_share(self.decode_background)

    def link(self, dst: NodeId) -> LinkEnv | None:
        for link in self.links:
            if link.dst == dst:
                return link
        return None


@dataclass(frozen=True, slots=True)
class EnvironmentState:
    """E(t) as of monitor time ``now``.

    ``nodes`` holds every enrolled node (never-seen ones with ``reports == 0``).
    ``sla_hit_rate`` is over the configured sliding window, ``None`` when the
    window holds no request. Report counters are totals since the monitor started.
    """

    now: float
    nodes: Mapping[NodeId, NodeEnv]
    latency_ewma_s: float | None  # per request: mean decode step, around the ring
    ttft_ewma_s: float | None
    sla_hit_rate: float | None
    sla_window_requests: int
    requests_total: int
    sla_hits_total: int
    reports_accepted: int
    reports_stale: int
    reports_refused: tuple[tuple[str, int], ...]  # (reason, count), reason order

    def iter_links(self) -> Iterator[LinkEnv]:
        """Every observed link, grouped by source node."""
        for node in self.nodes.values():
            yield from node.links

    def link(self, src: NodeId, dst: NodeId) -> LinkEnv | None:
        node = self.nodes.get(src)
        return None if node is None else node.link(dst)

    def is_alive(self, node_id: NodeId) -> bool:
        node = self.nodes.get(node_id)
        return node is not None and node.alive

    def to_cluster_state(
        self, static: NodeInventory, assume: LinkAssumption | None = None,
        profile: ModelProfile | None = None,
    ) -> ClusterState:
        """The planner's input: inventory figures overlaid with what was measured.

        Nodes keep inventory order. A node without reports is ``alive`` only if
        it is still within its liveness grace, and carries no layer times (the
        planner falls back to FLOPs / declared speed). Links appear once both
        ends are in the inventory and both RTT and bandwidth were observed;
        other links between live nodes follow ``complete_links`` with ``assume``.

        With ``profile`` each node's speed is calibrated from its own
        measurements (``calibrated_speed``): a node that measures k times
        slower than it declares on the layers it runs is planned k times
        slower on the layers it does not run yet, so an overloaded node does
        not look fast for the layers a migration would give it.
        """
        nodes: list[NodeState] = []
        links: list[LinkState] = []
        for spec in static.nodes:
            env = self.nodes.get(spec.node_id)
            if env is None:  # in the inventory but not enrolled with this monitor
                nodes.append(replace(spec, alive=False))
                continue
            nodes.append(
                NodeState(
                    node_id=spec.node_id,
                    trust=spec.trust,
                    memory_bytes=spec.memory_bytes,
                    flops_per_s=spec.flops_per_s if profile is None
                    else calibrated_speed(spec.flops_per_s, env, profile),
                    utilization=env.background_utilization,
                    alive=env.alive,
                    layer_seconds=_overlay(spec.layer_seconds, current_decode(env)),
                    trusted_by=spec.trusted_by,
                    address=spec.address,
                )
            )
            for lk in env.links:
                if lk.dst in static and lk.rtt_s is not None and lk.bandwidth_bps is not None:
                    links.append(LinkState(lk.src, lk.dst, lk.rtt_s, lk.bandwidth_bps))
        return complete_links(ClusterState(nodes=tuple(nodes), links=tuple(links)), assume)[0]

    def measured_profile(self, profile: ModelProfile, static: NodeInventory) -> ModelProfile:
        """``profile`` with FLOPs estimates replaced by what was measured.

        Each measured time converts back to effective FLOPs per token through
        the cost model's own speed rule (declared speed times the free share
        of the node). A layer is recalibrated only when at least two live
        nodes measured it, to the smallest of their figures: a single node
        that runs slower than it declares (overloaded beyond what its
        utilisation shows) would otherwise make the layer look expensive on
        every node. That node's own measured times still count for it
        (``to_cluster_state``). Other layers (and embed / head) keep theirs.
        """
        samples: dict[LayerKey, list[float]] = {}
        for env in self.nodes.values():
            spec = static.get(env.node_id)
            if spec is None or not env.alive or spec.flops_per_s <= 0:
                continue
            speed = spec.flops_per_s * env.measured_free  # the speed the times were taken at
            for layer, seconds in zip(env.decode.layers, env.decode.seconds, strict=True):
                if seconds > 0:
                    samples.setdefault(layer, []).append(seconds * speed)
        if not samples:
            return profile

        def calibrated(cost: LayerCost, index: LayerKey) -> LayerCost:
            if len(samples.get(index, ())) < 2:
                return cost
            return replace(cost, flops_per_token=min(samples[index]))

        return replace(
            profile,
            layers=tuple(calibrated(c, i) for i, c in enumerate(profile.layers)),
            embed=calibrated(profile.embed, Part.EMBED),
            head=calibrated(profile.head, Part.HEAD),
        )


CALIBRATE_ABOVE = 2.0  # measured / estimated above which a node's speed is recalibrated


def calibrated_speed(declared: float, env: NodeEnv, profile: ModelProfile) -> float:
    """The node's speed as its own decode measurements show it: ``declared``
    divided by the median, over the decoder layers it measured, of measured
    time / the cost model's estimate (FLOPs / declared speed times its free
    share while they were measured). ``declared`` when it measured none."""
    free = env.measured_free
    ratios = sorted(
        seconds * declared * free / profile.layers[layer].flops_per_token
        for layer, seconds in zip(env.decode.layers, env.decode.seconds, strict=True)
        if isinstance(layer, int) and layer < profile.num_layers and seconds > 0
        and profile.layers[layer].flops_per_token > 0)
    if declared <= 0 or not ratios:
        return declared
    ratio = statistics.median(ratios)
    # Only a node clearly slower than it declares is recalibrated: contention
    # and per-call overhead make every measured node read somewhat slow, and
    # scaling those while unmeasured nodes keep their declared speed would
    # push layers towards whatever has not been measured yet.
    return declared / ratio if ratio > CALIBRATE_ABOVE else declared


RESCALE_BEYOND = 1.25  # free share then / now beyond which measured times are rescaled


def current_decode(env: NodeEnv) -> LayerTimes:
    """``env.decode`` as the layers would run now: times measured while the
    node had a clearly different free share (an overload began or ended since
    it last ran them) scale by then / now, the cost model's own speed rule, so
    a node overloaded after it ran a layer does not keep looking fast for it
    (and one that recovered does not keep looking slow). Within a factor of
    ``RESCALE_BEYOND`` the measured times stand as they are: background is a
    noisy difference of two utilisations, and a measurement beats a model."""
    ratio = env.measured_free / env.free_share
    if not env.decode or 1.0 / RESCALE_BEYOND <= ratio <= RESCALE_BEYOND:
        return env.decode
    return LayerTimes(env.decode.layers, tuple(s * ratio for s in env.decode.seconds))


def _overlay(
    estimate: tuple[tuple[LayerKey, float], ...], measured: LayerTimes
) -> tuple[tuple[LayerKey, float], ...]:
    """Per-layer times: a measured layer replaces its configured estimate, others stay."""
    if not estimate:
        return measured.pairs()  # the common case: nothing configured
    merged = dict(estimate)
    merged.update(zip(measured.layers, measured.seconds, strict=True))
    return tuple(sorted(merged.items()))
