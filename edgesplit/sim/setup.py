"""What one simulation runs: a scenario file (the test bed's YAML schema) turned
into nodes with hardware classes, links with traces, a model profile and the
simulator's settings.

A node with ``hardware:`` gets that class from ``data/hardware.yaml``; one
without is a test-bed node: a CPU thread of ``base_flops / slowdown`` FLOP/s
(what ``edgesplit.scenario.runner.calibrate`` measures), so the same file runs
in both. A link with ``trace:`` replays the trace; otherwise it has the fixed
delay (one way) and bandwidth the test bed emulates.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from edgesplit.core.types import ModelProfile
from edgesplit.scenario.spec import BASE_FLOPS, Scenario
from edgesplit.sim.hardware import HardwareClass, load_hardware, model_profile, testbed_class


@dataclass(frozen=True, slots=True)
class SimSettings:
    """The ``sim:`` section of a scenario; every field has a default."""

    model: str = ""  # built-in model (hardware.MODELS); "" = the scenario's tiny test-bed model
    dtype: str = ""  # profile the model as this dtype ("" = the checkpoint's)
    base_flops: float = BASE_FLOPS  # speed of a slowdown-1 test-bed node
    testbed_layer_overhead_s: float = 0.0  # fixed cost per layer per pass of such a node
    # Wall over CPU time of a pass on the test bed's machine (core waiting): its
    # emulated device takes max(wall, slowdown * CPU), so a test-bed node runs
    # at a slow-down of at least this (edgesplit.sim.calibrate measures it).
    testbed_stretch: float = 1.0
    report_interval_s: float = 1.0  # agents' report cycle
    interval_s: float = 1.0  # orchestrator's decision cycle
    cooldown_s: float = 30.0
    max_batch: int = 32  # decode sessions per forward pass
    prefill_chunk: int = 512  # prefill tokens per forward pass
    failure_detect_s: float = 1.0
    stall_timeout_s: float = 30.0
    retained_epochs: int = 2  # agents keep this many older epochs for draining sessions
    warmup_s: float = 3.0  # reports before the first plan and the first request
    planner_s: float = 0.05  # simulated time one planner call takes
    control_rtt_s: float = 0.002  # orchestrator <-> broadcaster <-> agents
    registry_mbps: float = 1000.0  # shard fetch bandwidth to any node
    load_gbps: float = 2.0  # shard load (disk -> device memory)
    load_layer_s: float = 0.0  # ... plus this per layer loaded (building the segment)
    incident_step_s: float = 2.0  # a decode step longer than this is a stall (downtime)
    incident_merge_s: float = 30.0  # failures/stalls this close are one incident
    link_alpha: float = 0.3  # monitor's link EWMA
    # Every pair of nodes linked (listed links, else the default link), as the
    # test bed does; False: only the listed links exist (large deployments).
    mesh: bool = True
    timeline_bucket_s: float = 10.0
    # Decode steps of a session alone on its route as one event per stretch
    # (edgesplit.sim.express); False: per-hop events throughout, same figures.
    express: bool = True

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SimSettings:
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown sim settings: {', '.join(sorted(unknown))}")
        return cls(**d)


@dataclass(frozen=True, slots=True)
class NodeSetup:
    id: str
    hw: HardwareClass
    trusted: bool
    entry: bool
    memory_bytes: int
    background: float = 0.0
    slowdown: float = 1.0


@dataclass(frozen=True, slots=True)
class LinkSetup:
    a: str
    b: str
    delay_s: float  # one way
    bandwidth_bps: float
    trace: str = ""
    trace_offset_s: float = 0.0


@dataclass(frozen=True)
class SimSetup:
    scenario: Scenario
    settings: SimSettings
    profile: ModelProfile
    nodes: tuple[NodeSetup, ...]
    links: tuple[LinkSetup, ...]
    orchestrator: dict[str, Any] = field(default_factory=dict)

    @property
    def entries(self) -> tuple[str, ...]:
        return tuple(n.id for n in self.nodes if n.entry)


def tiny_profile(model: dict[str, Any], dtype: str = "") -> ModelProfile:
    """The profile of the test bed's generated model, from its config alone."""
    from edgesplit.model.profile import profile_model

    h, heads = int(model.get("hidden", 384)), int(model.get("heads", 6))
    family = str(model.get("family", "qwen3"))
    config = {"model_type": family, "hidden_size": h, "num_hidden_layers": int(model.get("layers", 12)),
              "intermediate_size": int(model.get("intermediate") or 3 * h),
              "num_attention_heads": heads, "num_key_value_heads": int(model.get("kv_heads", 2)),
              "head_dim": h // heads, "vocab_size": int(model.get("vocab", 512)),
              "torch_dtype": "float32", "tie_word_embeddings": family.startswith("qwen")}
    return profile_model(config, dtype=dtype or None).to_core(name=f"tiny-{family}")


def build_setup(sc: Scenario, overrides: dict[str, Any] | None = None) -> SimSetup:
    settings = SimSettings.from_dict({**sc.sim, **(overrides or {})})
    if settings.model:
        profile = model_profile(settings.model)
        if settings.dtype:
            from edgesplit.model.profile import profile_model
            from edgesplit.sim.hardware import DATA, MODELS

            profile = profile_model(DATA / "models" / MODELS[settings.model] / "config.json",
                                    dtype=settings.dtype).to_core(name=settings.model)
    else:
        profile = tiny_profile(sc.model, settings.dtype)
    classes = load_hardware()
    nodes = []
    for n in sc.nodes:
        if n.hardware:
            if n.hardware not in classes:
                raise ValueError(f"node {n.id}: no hardware class {n.hardware!r} "
                                 f"(have: {', '.join(classes)})")
            hw = classes[n.hardware]
            nodes.append(NodeSetup(n.id, hw, n.trusted, n.entry, int(hw.memory),
                                   n.background_utilization))
        else:
            memory = int(n.memory_gb * 2**30)
            nodes.append(NodeSetup(n.id, testbed_class(settings.base_flops, memory,
                                                  settings.testbed_layer_overhead_s), n.trusted,
                                   n.entry, memory, n.background_utilization,
                                   max(n.slowdown, settings.testbed_stretch)))
    listed = {frozenset((lk.a, lk.b)): lk for lk in sc.links}
    if settings.mesh:
        ids = [n.id for n in sc.nodes]
        pairs = [(a, b) for i, a in enumerate(ids) for b in ids[i + 1:]]
    else:
        pairs = [(lk.a, lk.b) for lk in sc.links]
    links = []
    for a, b in pairs:
        spec = listed.get(frozenset((a, b))) or sc.link(a, b)
        links.append(LinkSetup(a, b, spec.delay_ms / 1000.0, spec.bandwidth_mbps * 1e6,
                               spec.trace, spec.trace_offset_s))
    return SimSetup(sc, settings, profile, tuple(nodes), tuple(links), dict(sc.orchestrator))
