"""Emulated heterogeneity for the local test bed: a compute slow-down per node
and delay / bandwidth / cut per outgoing link, applied in the project's own
transport so it works without root or netem. Off (all neutral) by default."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from edgesplit.rpc.errors import Unavailable
from edgesplit.v1 import node_agent_pb2 as na


@dataclass
class Conditions:
    compute_slowdown: float = 1.0
    link_delay_s: dict[str, float] = field(default_factory=dict)
    link_bandwidth_bps: dict[str, float] = field(default_factory=dict)
    link_down: dict[str, bool] = field(default_factory=dict)
    background_utilization: float = 0.0

    def to_proto(self) -> na.Conditions:
        return na.Conditions(compute_slowdown=self.compute_slowdown,
                             link_delay_s=self.link_delay_s,
                             link_bandwidth_bps=self.link_bandwidth_bps,
                             link_down=self.link_down,
                             background_utilization=self.background_utilization)


class Emulator:
    """Applies :class:`Conditions` to compute and to each outgoing link."""

    def __init__(self) -> None:
        self.conditions = Conditions()
        self._link_free_at: dict[str, float] = {}  # when the emulated wire is idle again
        self.emulated_busy_s = 0.0  # compute time added by the slow-down, in total

    def update(self, new: na.Conditions, replace: bool) -> Conditions:
        c = Conditions() if replace else self.conditions
        if new.compute_slowdown < 0 or new.background_utilization < 0 \
                or new.background_utilization > 1:
            raise ValueError("compute_slowdown >= 0 and background_utilization in [0, 1]")
        if any(v < 0 for v in (*new.link_delay_s.values(), *new.link_bandwidth_bps.values())):
            raise ValueError("link delay and bandwidth must be >= 0")
        if new.compute_slowdown or replace:
            c.compute_slowdown = new.compute_slowdown or 1.0
        if new.background_utilization or replace:
            c.background_utilization = new.background_utilization
        c.link_delay_s.update(new.link_delay_s)
        c.link_bandwidth_bps.update(new.link_bandwidth_bps)
        c.link_down.update(new.link_down)
        self.conditions = c
        return c

    def compute_seconds(self, wall_s: float, cpu_s: float) -> float:
        """How long a compute step takes on the emulated device.

        Without a slow-down: the real wall time. With slow-down k: k times the
        step's CPU time on the compute thread (agents run torch single-threaded
        on the test bed), not k times its wall time, which would multiply the
        waiting for cores that several agents on one small machine cause.
        """
        k = self.conditions.compute_slowdown
        if k == 1.0:
            return wall_s
        return k * min(cpu_s, wall_s) if cpu_s > 0 else k * wall_s

    async def after_compute(self, extra_s: float) -> None:
        """Hold the step for the rest of the emulated compute time; sleeping
        (not spinning) models a slower device without stealing CPU from the
        other nodes."""
        if extra_s > 0:
            self.emulated_busy_s += extra_s
            await asyncio.sleep(extra_s)

    async def transmit(self, dst: str, nbytes: int) -> float:
        """Delay a send to ``dst`` as the emulated link would: frames queue
        behind each other on the wire (bandwidth), then take the one-way
        delay. Returns the emulated seconds added."""
        c = self.conditions
        if c.link_down.get(dst):
            raise Unavailable(f"link to {dst} is down (emulated)")
        bw = c.link_bandwidth_bps.get(dst, 0.0)
        delay = c.link_delay_s.get(dst, 0.0)
        if bw <= 0 and delay <= 0:
            return 0.0
        now = time.monotonic()
        start = max(now, self._link_free_at.get(dst, 0.0))
        done = start + (nbytes * 8.0 / bw if bw > 0 else 0.0)
        self._link_free_at[dst] = done
        wait = done + delay - now
        if wait > 0:
            await asyncio.sleep(wait)
        return max(wait, 0.0)
