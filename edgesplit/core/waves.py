"""How many groups of sessions an entry keeps travelling its ring: waves.

A ring of P nodes is a pipeline. It serves most when a few large batches go
round it, each node working on one while the others work on theirs, and least
when every session goes round on its own: a batch of 16 decode steps costs a
node far less than 16 batches of one. Sessions that start apart (admission,
chunked prefill) would stay apart for good, since nothing on a ring brings two
groups together again. So the entry counts its **waves** — the sessions that
left hop 0 in one batch — until each is back. When a session's next step is
ready while ``max_waves`` waves are still out, it waits for the next wave to
come back and leaves with it (at most ``hold_s``): two groups become one.

vLLM keeps as many micro-batches in flight as pipeline stages (its virtual
engines); this is the same bound, reached from whatever order sessions came
in. Pure and clock-free: the caller passes ``now`` (docs/data-plane.md, waves).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from edgesplit.core.ewma import ewma_step

RING_ALPHA = 0.2  # EWMA weight of a wave's newest round trip
STALE_RINGS = 4.0  # a wave out this many round trips (a session lost unseen) no longer counts
MIN_STALE_S = 1.0


@dataclass(slots=True)
class _Wave:
    out: int  # sessions not back yet
    left_at: float


class Waves:
    """The waves of one route, as its entry sees them."""

    def __init__(self, max_waves: int) -> None:
        if max_waves < 1:
            raise ValueError("max_waves must be >= 1")
        self.max_waves = max_waves
        self.ring_s: float | None = None  # a wave's round trip (EWMA)
        self._wave_of: dict[str, int] = {}
        self._waves: dict[int, _Wave] = {}
        self._next = 0

    def depart(self, sessions: Iterable[str], now: float) -> None:
        """These sessions' steps left hop 0 together: one wave."""
        ids = list(sessions)
        for s in ids:
            self.forget(s)  # a session is in one wave at most
        wave = self._next
        self._next += 1
        self._waves[wave] = _Wave(len(ids), now)
        for s in ids:
            self._wave_of[s] = wave

    def back(self, session: str, now: float) -> bool:
        """The session's step came back; True when that completes its wave."""
        w = self._leave(session)
        if w is None or w.out > 0:
            return False
        self.ring_s = ewma_step(self.ring_s, now - w.left_at, RING_ALPHA)
        return True

    def forget(self, session: str) -> None:
        """The session will not come back (it failed or ended)."""
        self._leave(session)

    def _leave(self, session: str) -> _Wave | None:
        """Take the session out of its wave (dropped once empty); that wave."""
        wave = self._wave_of.pop(session, None)
        w = self._waves.get(wave) if wave is not None else None
        if w is not None:
            w.out -= 1
            if w.out <= 0:
                del self._waves[wave]  # type: ignore[arg-type]
        return w

    def out(self, now: float) -> int:
        """Waves on their way round (ones out for much longer than a round trip
        are given up: their sessions failed somewhere and will be replayed)."""
        stale = max(MIN_STALE_S, STALE_RINGS * (self.ring_s or 0.0))
        for wave in [k for k, w in self._waves.items() if now - w.left_at > stale]:
            del self._waves[wave]
        return len(self._waves)

    def must_wait(self, now: float) -> bool:
        """A ready step waits for the next wave back instead of leaving alone."""
        return self.out(now) >= self.max_waves

    def hold_s(self) -> float:
        """Longest a step waits to join a wave: one round trip (none measured yet: 0)."""
        return self.ring_s or 0.0
