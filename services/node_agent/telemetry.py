"""What the data plane tells the reporter: cumulative counters fed by hooks.

The data plane calls three hooks (set by :meth:`Telemetry.attach`) on the
serving path; each does a few dict updates and nothing else, so measuring
costs the serving path next to nothing:

* ``compute_observer(runner, phase, seconds, tokens)`` after each segment
  run: ``seconds`` already includes the emulated compute slow-down, so a
  slowed node reports what it would really take;
* ``frame_observer(dst, nbytes, seconds)`` after each frame (chunk) is
  acked (on receipt): ``seconds`` from the send to the ack;
* ``request_observer(ttft_s, step_latencies_s, ok)`` when a request ends.

The runner times a whole segment, not single layers, so a segment's time is
split evenly over its layers: the layers of one model have the same shapes,
so their costs differ by little more than timer noise.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from edgesplit.core.reports import AgentCounters, LinkSource, RequestSample
from edgesplit.core.types import LayerKey, NodeId, Part
from services.node_agent.links import LinkStats

HEAD_PHASE = "head"  # the phase the entry passes for final norm + lm_head + sampling


def layer_keys(spec: Any, phase: str) -> tuple[LayerKey, ...]:
    """The cost-model keys one timed run covers (embed rides with the layers it precedes)."""
    if phase == HEAD_PHASE:
        return (Part.HEAD,)
    layers = tuple(range(spec.start, spec.end))
    if layers:
        return layers
    return (Part.EMBED,) if spec.has_embed else ()


class Telemetry:
    """Cumulative per-layer seconds/tokens, bytes per next hop, finished requests, links."""

    def __init__(self, links: LinkStats | None = None, max_requests: int = 4096,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.links = links or LinkStats()
        self._clock = clock
        self._prefill: dict[LayerKey, tuple[float, int]] = {}
        self._decode: dict[LayerKey, tuple[float, int]] = {}
        self._bytes: dict[NodeId, int] = {}
        # Bounded: a monitor that is away for long loses the oldest requests,
        # not the agent's memory.
        self._requests: deque[RequestSample] = deque(maxlen=max_requests)

    def attach(self, compute: Any, stage: Any, entry: Any) -> None:
        compute.observer = self.on_compute
        stage.frame_observer = self.on_frame
        entry.request_observer = self.on_request

    # ---- hooks ---------------------------------------------------------------------
    def on_compute(self, runner: Any, phase: str, seconds: float, tokens: int) -> None:
        keys = layer_keys(runner.spec, phase)
        if not keys or tokens <= 0:
            return
        table = self._prefill if phase == "prefill" else self._decode
        share = seconds / len(keys)
        for k in keys:
            s, n = table.get(k, (0.0, 0))
            table[k] = (s + share, n + tokens)

    def on_frame(self, dst: str, nbytes: int, seconds: float) -> None:
        peer = NodeId(dst)
        self._bytes[peer] = self._bytes.get(peer, 0) + nbytes
        # The receiver acks on receipt, before its compute: the time is the link's.
        self.links.observe(dst, nbytes, seconds, LinkSource.PASSIVE, self._clock())

    def on_request(self, ttft_s: float, step_latencies_s: Sequence[float], ok: bool) -> None:
        # A failed request missed its SLA whatever its steps took; a finished
        # one is judged against the budget when the report is built.
        self._requests.append(RequestSample(ttft_s, tuple(step_latencies_s),
                                            None if ok else False))

    # ---- reading -------------------------------------------------------------------
    def counters(self) -> AgentCounters:
        """A copy of the cumulative counters (a few dozen entries)."""
        return AgentCounters(dict(self._prefill), dict(self._decode), dict(self._bytes))

    def pending_requests(self) -> tuple[RequestSample, ...]:
        return tuple(self._requests)

    def delivered(self, n: int) -> None:
        """The oldest ``n`` requests reached the monitor."""
        for _ in range(min(n, len(self._requests))):
            self._requests.popleft()
