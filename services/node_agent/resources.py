"""Machine figures for the report: CPU and memory (psutil), GPU (NVML) when present.

A node without a GPU, without the NVIDIA driver or running its segments on
the CPU reports no GPU at all (``None``), never zeros: "idle GPU" and "no
GPU" mean different things to the planner.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import psutil

from edgesplit.core.reports import GpuSample, ResourceSample

log = logging.getLogger(__name__)


def nvml_index(device: str, visible: str | None = None) -> int | None:
    """NVML index of the torch device ``cuda[:N]``, or None for a CPU device.

    CUDA numbers only the visible GPUs; NVML numbers all of them, so ``cuda:N``
    is the N-th entry of ``CUDA_VISIBLE_DEVICES`` when that lists indices.
    """
    if not device.startswith("cuda"):
        return None
    n = int(device.partition(":")[2] or 0)
    entries = [e.strip() for e in (visible or "").split(",") if e.strip()]
    if entries and n < len(entries) and entries[n].isdigit():
        return int(entries[n])
    return n


class GpuReader:
    """One GPU through nvidia-ml-py; ``read()`` is None when it cannot be read."""

    def __init__(self, index: int) -> None:
        import pynvml  # nvidia-ml-py; imported here so CPU nodes never need it

        pynvml.nvmlInit()
        self._nvml = pynvml
        self._handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        self.index = index

    def read(self) -> GpuSample | None:
        try:
            util = self._nvml.nvmlDeviceGetUtilizationRates(self._handle)
            mem = self._nvml.nvmlDeviceGetMemoryInfo(self._handle)
        except Exception as exc:  # noqa: BLE001 - a failed read is a missing sample
            log.debug("NVML read failed: %s", exc)
            return None
        return GpuSample(min(1.0, util.gpu / 100.0), int(mem.used), int(mem.total))


def open_gpu(device: str) -> GpuReader | None:
    index = nvml_index(device, os.environ.get("CUDA_VISIBLE_DEVICES"))
    if index is None:
        return None
    try:
        return GpuReader(index)
    except Exception as exc:  # noqa: BLE001 - no driver / no library: report no GPU
        log.warning("device %s but no GPU figures via NVML: %s", device, exc)
        return None


class ResourceSampler:
    """Call ``sample`` once per report: CPU utilisation is over the time since the last call."""

    def __init__(self, device: str = "cpu", gpu: Any = None, scope: str = "machine",
                 emulated_busy: Any = None) -> None:
        """``scope="process"`` (the local test bed, where several agents share one
        machine): utilisation is this process's CPU time plus the emulated
        slow-down's busy time, as a fraction of one machine's cores."""
        psutil.cpu_percent(interval=None)  # primes the counter; the first reading is since now
        self._gpu = gpu if gpu is not None else open_gpu(device)
        self._scope = scope
        self._proc = psutil.Process()
        self._emulated = emulated_busy or (lambda: 0.0)
        self._last = (time.monotonic(), self._busy())

    def _busy(self) -> float:
        t = self._proc.cpu_times()
        return float(t.user + t.system) / (psutil.cpu_count() or 1) + float(self._emulated())

    def _cpu(self) -> float:
        if self._scope != "process":
            return psutil.cpu_percent(interval=None) / 100.0
        now, busy = time.monotonic(), self._busy()
        (then, before), self._last = self._last, (now, busy)
        return (busy - before) / (now - then) if now > then else 0.0

    @property
    def has_gpu(self) -> bool:
        return self._gpu is not None

    def sample(self, queue_depth: int = 0, active_sessions: int = 0,
               background_utilization: float = 0.0) -> ResourceSample:
        """``background_utilization`` is the test bed's emulated co-located load."""
        cpu = self._cpu()
        vm = psutil.virtual_memory()
        return ResourceSample(
            cpu_utilization=min(1.0, max(0.0, cpu + background_utilization)),
            memory_used_bytes=int(vm.total - vm.available),  # what others could not get
            memory_total_bytes=int(vm.total),
            gpu=self._gpu.read() if self._gpu is not None else None,
            queue_depth=max(0, queue_depth), active_sessions=max(0, active_sessions))
