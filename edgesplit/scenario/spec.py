"""Scenario files: nodes, links, load and timed events, as YAML operators can
write. ``load_scenario(NAME_OR_PATH)`` finds a built-in or reads a file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

BUILTIN = Path(__file__).parent / "builtin"
# How a scenario can be run (edgesplit.scenario.runner): the orchestrator
# adapting, keeping its first plan, or the entry alone holding the whole model.
MODES = ("adaptive", "static", "single-device")
# A CPU core of this test bed counts as an A6000-class node's speed; a node
# with slowdown k is k times slower per layer (a Jetson is about 10x).
BASE_FLOPS = 2e10


class ScenarioError(ValueError):
    pass


@dataclass(frozen=True)
class NodeSpec:
    id: str
    trust: str = "untrusted"
    memory_gb: float = 16.0
    slowdown: float = 1.0
    entry: bool = False
    background_utilization: float = 0.0
    # Simulator only (the test bed ignores it): a class of edgesplit/sim/data/hardware.yaml.
    hardware: str = ""

    @property
    def trusted(self) -> bool:
        return self.trust == "trusted"


@dataclass(frozen=True)
class LinkSpec:
    a: str
    b: str
    delay_ms: float = 0.0  # one way
    bandwidth_mbps: float = 1000.0
    # Simulator only: a trace (edgesplit/sim/data/traces name or CSV path) that
    # replaces the fixed figures, read from ``trace_offset_s`` on; ``delay_ms``
    # then adds to the trace's one-way delay (e.g. a backhaul behind the radio).
    trace: str = ""
    trace_offset_s: float = 0.0


@dataclass(frozen=True)
class LoadSpec:
    """``requests_per_s > 0``: open loop, Poisson arrivals whatever the latency
    (so both modes face the same requests; at most ``max_in_flight`` at once,
    an arrival beyond that counts as failed). Otherwise closed loop:
    ``concurrency`` clients each send the next request ``think_s`` after the
    last; a ``load`` event with ``concurrency: N`` changes their number."""

    requests_per_s: float = 0.0
    max_in_flight: int = 8
    concurrency: int = 2
    prompt_tokens: int = 24
    new_tokens: int = 24
    think_s: float = 0.1
    privacy_high_fraction: float = 0.0


@dataclass(frozen=True)
class Event:
    at: float
    kind: str  # "link", "node", "kill", "restart", "privacy_burst", "load"
    args: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        a = self.args
        if self.kind == "link":
            return (f"link {a['a']}<->{a['b']}: {a.get('bandwidth_mbps', '-')} Mbit/s, "
                    f"{a.get('delay_ms', '-')} ms")
        if self.kind == "node":
            return f"node {a['node']}: slowdown {a.get('slowdown', '-')}, " \
                   f"background {a.get('background_utilization', '-')}"
        if self.kind in ("kill", "restart"):
            return f"{self.kind} {a['node']}"
        if self.kind == "load":
            if "concurrency" in a:
                return f"load: {a['concurrency']} concurrent clients"
            return f"load: {a.get('requests_per_s', '-')} requests/s"
        return f"privacy=high burst of {a.get('count', 1)}"


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    duration_s: float
    sla_step_s: float
    model: dict[str, Any]
    nodes: tuple[NodeSpec, ...]
    links: tuple[LinkSpec, ...]
    default_link: LinkSpec
    load: LoadSpec
    events: tuple[Event, ...]
    # Orchestrator settings for this scenario (flag name -> value), e.g.
    # {"latency_trigger_s": 0.25}; the seed's defaults otherwise.
    orchestrator: dict[str, Any] = field(default_factory=dict)
    # Simulator settings (edgesplit.sim.setup.SimSettings fields), e.g. {"model":
    # "llama-2-7b"}; the test bed ignores them.
    sim: dict[str, Any] = field(default_factory=dict)
    # Test bed: an emulated slow device runs one step at a time (node agents'
    # --serial-device), as a real one would under concurrent sessions.
    serial_device: bool = False

    @property
    def entry(self) -> NodeSpec:
        return next(n for n in self.nodes if n.entry)

    def link(self, a: str, b: str) -> LinkSpec:
        for link in self.links:
            if {link.a, link.b} == {a, b}:
                return link
        return LinkSpec(a, b, self.default_link.delay_ms, self.default_link.bandwidth_mbps)


def _event(raw: dict[str, Any], ids: set[str]) -> Event:
    at = float(raw.pop("at"))
    if "link" in raw:
        link = raw.pop("link")
        for end in ("a", "b"):
            if link[end] not in ids:
                raise ScenarioError(f"event at {at}: unknown node {link[end]!r}")
        return Event(at, "link", {**link, **raw})
    for kind in ("kill", "restart"):
        if kind in raw:
            if raw[kind] not in ids:
                raise ScenarioError(f"event at {at}: unknown node {raw[kind]!r}")
            return Event(at, kind, {"node": raw[kind]})
    if "node" in raw:
        if raw["node"] not in ids:
            raise ScenarioError(f"event at {at}: unknown node {raw['node']!r}")
        return Event(at, "node", raw)
    if "privacy_burst" in raw:
        return Event(at, "privacy_burst", dict(raw["privacy_burst"] or {}))
    if "load" in raw:  # a step change of load: open-loop rate or closed-loop clients
        args = dict(raw["load"] or {})
        if "concurrency" in args and int(args["concurrency"]) < 0:
            raise ScenarioError(f"event at {at}: load concurrency must be >= 0")
        return Event(at, "load", args)
    raise ScenarioError(f"event at {at}: expected link, node, kill, restart, privacy_burst "
                        "or load")


def parse_scenario(data: dict[str, Any]) -> Scenario:
    try:
        nodes = tuple(NodeSpec(**n) for n in data["nodes"])
        ids = {n.id for n in nodes}
        if len(ids) != len(nodes):
            raise ScenarioError("duplicate node ids")
        if sum(n.entry for n in nodes) != 1:
            raise ScenarioError("exactly one node must be the entry")
        links = tuple(LinkSpec(**link) for link in data.get("links", []))
        for link in links:
            if {link.a, link.b} - ids:
                raise ScenarioError(f"link {link.a}-{link.b} names an unknown node")
        d = data.get("default_link", {"delay_ms": 1, "bandwidth_mbps": 1000})
        events = tuple(sorted((_event(dict(e), ids) for e in data.get("events", [])),
                              key=lambda e: e.at))
        return Scenario(
            name=str(data["name"]), description=str(data.get("description", "")),
            duration_s=float(data.get("duration_s", 90)),
            sla_step_s=float(data.get("sla_step_s", 0.4)),
            model=dict(data.get("model", {})), nodes=nodes, links=links,
            default_link=LinkSpec("*", "*", float(d["delay_ms"]), float(d["bandwidth_mbps"])),
            load=LoadSpec(**data.get("load", {})), events=events,
            orchestrator=dict(data.get("orchestrator", {})),
            sim=dict(data.get("sim", {})), serial_device=bool(data.get("serial_device", False)))
    except (KeyError, TypeError) as exc:
        raise ScenarioError(f"bad scenario: {exc}") from exc


def load_scenario(name_or_path: str) -> Scenario:
    path = Path(name_or_path)
    if not path.exists():
        path = BUILTIN / f"{name_or_path}.yaml"
    if not path.exists():
        names = sorted(p.stem for p in BUILTIN.glob("*.yaml"))
        raise ScenarioError(f"no scenario {name_or_path!r} (built-in: {', '.join(names)})")
    return parse_scenario(yaml.safe_load(path.read_text()))
