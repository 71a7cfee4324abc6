"""Agents whose real compute shares one machine keep one wave per core on
the ring (docs/data-plane.md, waves)."""

from __future__ import annotations

import psutil

from edgesplit.testbed import shared_host_waves


def test_one_wave_per_core() -> None:
    assert shared_host_waves() == (psutil.cpu_count(logical=False) or psutil.cpu_count() or 1)
    assert shared_host_waves() >= 1
