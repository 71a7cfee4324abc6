"""Hardware classes and the roofline cost of running layers on them.

The figures come from ``data/hardware.yaml`` (each with its published source);
``HardwareClass.batch_seconds`` is the one formula the simulator uses for a
forward pass, so prefill, decode and batching all follow from it:

    time = max(flops / (peak_flops * compute_efficiency),
               bytes / (memory_bandwidth * memory_efficiency))
           + layers * layer_overhead_s

where ``flops`` is the tokens in the batch times the layers' FLOPs per token
and ``bytes`` is the layers' weights (read once per pass, whatever the batch)
plus the KV cache every sequence of the batch attends over. Decoding one token
is memory-bound (weights dominate), so a batch of sessions costs little more
than one; a long prefill is compute-bound.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from edgesplit.core.types import ModelProfile

DATA = Path(__file__).parent / "data"


@dataclass(frozen=True, slots=True)
class HardwareClass:
    name: str
    peak_flops: float
    memory_bandwidth: float  # bytes/s
    memory: float  # bytes
    compute_efficiency: float
    memory_efficiency: float
    layer_overhead_s: float
    source: str = ""

    @property
    def effective_flops(self) -> float:
        return self.peak_flops * self.compute_efficiency

    def batch_seconds(self, flops: float, bytes_read: float, layers: int) -> float:
        """Seconds for one forward pass over ``layers`` layers (the roofline)."""
        compute = flops / self.effective_flops
        memory = bytes_read / (self.memory_bandwidth * self.memory_efficiency)
        return max(compute, memory) + layers * self.layer_overhead_s

    def decode_token_seconds(self, profile: ModelProfile, context: int = 0) -> float:
        """One token through every layer alone (the single-session decode step)."""
        flops = sum(c.flops_per_token for c in profile.layers)
        nbytes = sum(c.weight_bytes + c.kv_bytes_per_token * context for c in profile.layers)
        return self.batch_seconds(flops, nbytes, profile.num_layers)


def load_hardware(path: Path | None = None) -> dict[str, HardwareClass]:
    doc = yaml.safe_load((path or DATA / "hardware.yaml").read_text())
    defaults = doc.get("defaults", {})
    out: dict[str, HardwareClass] = {}
    for name, spec in doc["classes"].items():
        merged = {**defaults, **spec}
        out[name] = HardwareClass(
            name=name,
            peak_flops=float(merged["peak_flops"]),
            memory_bandwidth=float(merged["memory_bandwidth"]),
            memory=float(merged["memory"]),
            compute_efficiency=float(merged["compute_efficiency"]),
            memory_efficiency=float(merged["memory_efficiency"]),
            layer_overhead_s=float(merged["layer_overhead_s"]),
            source=str(merged.get("source", "")).strip(),
        )
    return out


def testbed_class(flops_per_s: float, memory: float, layer_overhead_s: float = 0.0
                  ) -> HardwareClass:
    """A test-bed node: a CPU thread computing at ``flops_per_s`` plus a fixed cost
    per layer per pass (both measured); never memory-bound (its model is tiny)."""
    return HardwareClass(
        name="testbed-cpu", peak_flops=flops_per_s, memory_bandwidth=1e15, memory=memory,
        compute_efficiency=1.0, memory_efficiency=1.0, layer_overhead_s=layer_overhead_s,
        source="measured by edgesplit.scenario.runner.calibrate on this machine")


MODELS = {
    "llama-2-7b": "llama-2-7b",
    "llama-2-13b": "llama-2-13b",
    "qwen2.5-7b": "qwen2.5-7b",
    "mistral-7b": "mistral-7b",
}


def model_profile(name: str, context_len: int = 512) -> ModelProfile:
    """Core profile of a built-in model (its Hugging Face config.json, no weights)."""
    from edgesplit.model.profile import profile_model

    if name not in MODELS:
        raise KeyError(f"no built-in model {name!r} (have: {', '.join(MODELS)})")
    prof = profile_model(DATA / "models" / MODELS[name] / "config.json",
                         context_len=context_len)
    return prof.to_core(name=name)
