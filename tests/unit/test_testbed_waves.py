"""Agents whose real compute shares one machine keep as many waves on the
ring as its cores can compute side by side (docs/data-plane.md, waves)."""

from __future__ import annotations

import psutil

from edgesplit.testbed import shared_host_waves


def test_torch_default_threads_take_every_core_so_one_wave() -> None:
    assert shared_host_waves(0) == 1


def test_one_thread_per_agent_gives_a_wave_per_core() -> None:
    cores = psutil.cpu_count(logical=False) or 1
    assert shared_host_waves(1) == cores
    assert shared_host_waves(cores) == 1
    assert shared_host_waves(4 * cores) == 1  # never none
