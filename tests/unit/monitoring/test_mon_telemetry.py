"""Agent-side counters fed by the data plane hooks (services/node_agent/telemetry.py),
the report they build, and resource sampling."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from edgesplit.core.reports import build_report
from edgesplit.core.types import Part
from edgesplit.model.base import SegmentSpec
from services.node_agent.resources import ResourceSampler, nvml_index
from services.node_agent.telemetry import Telemetry, layer_keys


def runner(start: int, end: int, embed: bool = False, head: bool = False) -> SimpleNamespace:
    return SimpleNamespace(spec=SegmentSpec(start, end, embed, head))


def test_layer_keys() -> None:
    assert layer_keys(SegmentSpec(2, 5), "decode") == (2, 3, 4)
    assert layer_keys(SegmentSpec(0, 2, has_embed=True), "prefill") == (0, 1)  # embed rides along
    assert layer_keys(SegmentSpec(0, 0, has_embed=True), "prefill") == (Part.EMBED,)
    assert layer_keys(SegmentSpec(0, 0, has_head=True), "decode") == ()
    assert layer_keys(SegmentSpec(0, 4, True, True), "head") == (Part.HEAD,)


def test_segment_time_split_over_layers_per_token() -> None:
    t = Telemetry()
    t.on_compute(runner(1, 3), "prefill", 0.080, 8)  # 8 tokens, 2 layers
    t.on_compute(runner(1, 3), "decode", 0.004, 1)
    t.on_compute(runner(1, 3), "decode", 0.006, 1)
    t.on_compute(runner(0, 1, head=True), "head", 0.001, 1)
    t.on_compute(runner(1, 3), "decode", 0.5, 0)  # no tokens: nothing to learn
    r = build_report("n", 0, 1.0, ResourceSampler("cpu").sample(), t.counters())
    assert dict(r.prefill_layer_s) == {1: pytest.approx(0.005), 2: pytest.approx(0.005)}
    assert dict(r.decode_layer_s) == {1: pytest.approx(0.0025), 2: pytest.approx(0.0025),
                                      Part.HEAD: pytest.approx(0.001)}
    assert r.compute_busy_s == pytest.approx(0.091)


def test_frames_requests_and_delivery() -> None:
    t = Telemetry(max_requests=2)

    t.on_frame("b", 500, 0.040)
    t.on_frame("b", 500, 0.040)
    assert t.counters().bytes_sent == {"b": 1000}
    (obs,) = t.links.take()
    assert obs.rtt_s == pytest.approx(0.040)  # acked on receipt: all of it is the link
    t.on_request(0.2, [0.05, 0.06], ok=True)
    t.on_request(0.3, [], ok=False)
    t.on_request(0.1, [0.01], ok=True)  # bounded: the oldest goes
    pending = t.pending_requests()
    assert [r.ttft_s for r in pending] == [0.3, 0.1] and pending[0].sla_met is False
    assert pending[1].sla_met is None  # judged later against the budget
    t.delivered(1)
    assert [r.ttft_s for r in t.pending_requests()] == [0.1]


def test_resources_without_gpu_and_background_load() -> None:
    sampler = ResourceSampler("cpu")
    assert not sampler.has_gpu
    r = sampler.sample(queue_depth=2, active_sessions=3, background_utilization=0.4)
    assert r.gpu is None and 0.4 <= r.cpu_utilization <= 1.0
    assert 0 < r.memory_used_bytes <= r.memory_total_bytes
    assert (r.queue_depth, r.active_sessions) == (2, 3)


def test_nvml_index_follows_cuda_visible_devices() -> None:
    assert nvml_index("cpu") is None
    assert nvml_index("cuda") == 0 and nvml_index("cuda:1") == 1
    assert nvml_index("cuda:1", "3,5") == 5
    assert nvml_index("cuda:0", "GPU-uuid") == 0  # UUIDs: fall back to the CUDA index


def test_missing_nvml_is_a_clean_absence(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from services.node_agent import resources

    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails as without the package
    assert resources.open_gpu("cuda:0") is None
    fake = SimpleNamespace(read=lambda: None)
    assert ResourceSampler("cuda:0", gpu=fake).sample().gpu is None
