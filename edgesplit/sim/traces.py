"""Link traces: bandwidth and round-trip time over time, replayed by the simulator.

A trace file is CSV with a header ``t_s,bandwidth_mbps,rtt_ms``; each row holds
from its ``t_s`` until the next row (piecewise constant). A row with bandwidth
0 is an outage (a 5G handover): nothing is serialised onto the link until the
next row. Past the last row the trace wraps around, so an hour-long trace
serves a longer run.

The built-in traces in ``data/traces`` are *synthetic*: ``synthesize`` draws
them, with a fixed seed, inside measurement ranges published for commercial
5G and MEC deployments (the ranges and their sources are in ``PROFILES``).
They are replayable stand-ins for measured traces, not measurements; a
measured trace in the same CSV form drops in with ``trace: path.csv``.
"""

from __future__ import annotations

import bisect
import csv
import functools
import math
import random
from dataclasses import dataclass, field
from pathlib import Path

TRACE_DIR = Path(__file__).parent / "data" / "traces"


@dataclass(frozen=True, slots=True)
class Trace:
    """Piecewise-constant bandwidth (bit/s) and RTT (s) from ``times[i]`` on."""

    name: str
    times: tuple[float, ...]
    bandwidth_bps: tuple[float, ...]
    rtt_s: tuple[float, ...]
    period_s: float = field(init=False)

    def __post_init__(self) -> None:
        if not self.times or self.times[0] != 0.0:
            raise ValueError(f"trace {self.name}: first row must be at t=0")
        if any(b < a for a, b in zip(self.times, self.times[1:], strict=False)):
            raise ValueError(f"trace {self.name}: times must not decrease")
        # The last row lasts as long as the median gap, then the trace wraps.
        gaps = sorted(b - a for a, b in zip(self.times, self.times[1:], strict=False)) or [1.0]
        object.__setattr__(self, "period_s", self.times[-1] + gaps[len(gaps) // 2])

    def index(self, t: float) -> int:
        return bisect.bisect_right(self.times, t % self.period_s) - 1

    def at(self, t: float) -> tuple[float, float]:
        """(bandwidth bit/s, RTT s) at simulated time ``t``."""
        i = self.index(t)
        return self.bandwidth_bps[i], self.rtt_s[i]

    def row(self, t: float) -> tuple[float, float, float, float]:
        """(from, until, bandwidth bit/s, RTT s) of the row in force at ``t``, its
        bounds on ``t``'s own lap, so a caller can reuse it while ``t`` stays inside."""
        i = self.index(t)
        lap = t - t % self.period_s
        until = self.times[i + 1] if i + 1 < len(self.times) else self.period_s
        return lap + self.times[i], lap + until, self.bandwidth_bps[i], self.rtt_s[i]

    def usable_from(self, t: float) -> float:
        """The first time >= ``t`` at which the link is not in an outage."""
        period = self.period_s
        for _ in range(len(self.times) + 1):
            i = self.index(t)
            if self.bandwidth_bps[i] > 0:
                return t
            nxt = self.times[i + 1] if i + 1 < len(self.times) else period
            # From the start of this lap; a nanosecond on, so float rounding
            # cannot leave t just short of the row it moves to.
            t = t - t % period + nxt + 1e-9
        raise ValueError(f"trace {self.name} is an outage throughout")


@functools.lru_cache(maxsize=64)
def load_trace(name_or_path: str) -> Trace:
    """A built-in trace by name (``5g-radio``) or a CSV file path."""
    path = Path(name_or_path)
    if not path.exists():
        path = TRACE_DIR / f"{name_or_path}.csv"
    if not path.exists():
        names = sorted(p.stem for p in TRACE_DIR.glob("*.csv"))
        raise FileNotFoundError(f"no trace {name_or_path!r} (built-in: {', '.join(names)})")
    times, bw, rtt = [], [], []
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            times.append(float(row["t_s"]))
            bw.append(float(row["bandwidth_mbps"]) * 1e6)
            rtt.append(float(row["rtt_ms"]) / 1000.0)
    return Trace(path.stem, tuple(times), tuple(bw), tuple(rtt))


@dataclass(frozen=True, slots=True)
class LinkProfile:
    """Ranges a synthetic trace stays in, and where they come from."""

    bandwidth_mbps: tuple[float, float]  # (low, high) of the normal regime
    rtt_ms: tuple[float, float]
    handover_every_s: float  # mean time between outages (0: none)
    handover_ms: tuple[float, float]  # outage length range
    dip_every_s: float  # mean time between congestion dips (0: none)
    dip_mbps: tuple[float, float]  # bandwidth during a dip
    dip_s: tuple[float, float]  # dip length range
    source: str


PROFILES: dict[str, LinkProfile] = {
    # Device <-> MEC over the 5G radio; the uplink is the narrow direction.
    "5g-radio": LinkProfile(
        bandwidth_mbps=(30.0, 120.0), rtt_ms=(8.0, 25.0),
        handover_every_s=90.0, handover_ms=(30.0, 110.0),
        dip_every_s=300.0, dip_mbps=(8.0, 40.0), dip_s=(5.0, 30.0),
        source="uplink and RTT ranges of commercial mid-band 5G: Xu et al., SIGCOMM 2020; "
               "Narayanan et al., WWW 2020; handover interruptions: Hassan et al., "
               "SIGCOMM 2022"),
    # MEC <-> MEC inside one operator's metro network.
    "metro": LinkProfile(
        bandwidth_mbps=(2000.0, 10000.0), rtt_ms=(0.5, 2.0),
        handover_every_s=0.0, handover_ms=(0.0, 0.0),
        dip_every_s=900.0, dip_mbps=(300.0, 800.0), dip_s=(10.0, 60.0),
        source="metro aggregation: 10 GbE links, sub-2 ms RTT (ETSI GS MEC 003 deployment "
               "examples)"),
    # MEC <-> cloud region over the operator's backhaul and the internet.
    "backhaul": LinkProfile(
        bandwidth_mbps=(200.0, 1000.0), rtt_ms=(20.0, 45.0),
        handover_every_s=0.0, handover_ms=(0.0, 0.0),
        dip_every_s=600.0, dip_mbps=(15.0, 45.0), dip_s=(20.0, 90.0),
        source="edge-to-cloud RTT 20-45 ms and congested backhaul dips: Xu et al., "
               "SIGCOMM 2020 (server placement experiments)"),
}


def synthesize(kind: str, seed: int, duration_s: float = 3600.0, step_s: float = 1.0
               ) -> list[tuple[float, float, float]]:
    """Rows ``(t_s, bandwidth_mbps, rtt_ms)`` of a seeded trace inside ``PROFILES[kind]``.

    Normal regime: a log-space random walk between the bounds, one row per
    ``step_s``; on top, Poisson handovers (bandwidth 0 for tens of ms) and
    congestion dips (bandwidth in the dip range for tens of seconds).
    """
    p = PROFILES[kind]
    rng = random.Random(f"{kind}/{seed}")
    lo, hi = math.log(p.bandwidth_mbps[0]), math.log(p.bandwidth_mbps[1])
    x = (lo + hi) / 2
    rtt = sum(p.rtt_ms) / 2
    dip_until, dip_bw = -1.0, 0.0
    rows: list[tuple[float, float, float]] = []
    t = 0.0
    while t < duration_s:
        x = min(hi, max(lo, x + rng.gauss(0.0, 0.08 * (hi - lo))))
        rtt = min(p.rtt_ms[1], max(p.rtt_ms[0], rtt + rng.gauss(0.0, 0.05 * (p.rtt_ms[1] - p.rtt_ms[0]))))
        if p.dip_every_s and t >= dip_until and rng.random() < step_s / p.dip_every_s:
            dip_until, dip_bw = t + rng.uniform(*p.dip_s), rng.uniform(*p.dip_mbps)
        bw = dip_bw if t < dip_until else math.exp(x)
        rows.append((round(t, 3), round(bw, 2), round(rtt, 2)))
        if p.handover_every_s and rng.random() < step_s / p.handover_every_s:
            start = t + rng.uniform(0.0, step_s * 0.5)
            rows.append((round(start, 3), 0.0, round(rtt, 2)))
            rows.append((round(start + rng.uniform(*p.handover_ms) / 1000.0, 3),
                         round(bw, 2), round(rtt, 2)))
        t += step_s
    return rows


def write_trace(path: Path, rows: list[tuple[float, float, float]]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t_s", "bandwidth_mbps", "rtt_ms"])
        w.writerows(rows)


def main() -> None:
    """Regenerate the built-in traces (``python -m edgesplit.sim.traces``)."""
    TRACE_DIR.mkdir(parents=True, exist_ok=True)
    for kind in PROFILES:
        for seed in (1, 2, 3):
            write_trace(TRACE_DIR / f"{kind}-{seed}.csv", synthesize(kind, seed))


if __name__ == "__main__":
    main()
