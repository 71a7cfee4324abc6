"""Exponentially weighted moving averages.

Two forms of the same rule: ``ewma_step`` on plain floats, which the monitor's
hot path uses (one float per metric, no object per update), and the immutable
``Ewma`` value for callers that want the average and its sample count as one
value. Both start at the first sample instead of at zero, so a fresh average is
not dragged towards zero for its first few samples.
"""

from __future__ import annotations

from dataclasses import dataclass


def check_alpha(alpha: float) -> float:
    """Return ``alpha`` if it is a usable smoothing factor, else raise."""
    # alpha == 0 would freeze the average at its first sample forever.
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"EWMA alpha must be in (0, 1], got {alpha!r}")
    return alpha


def ewma_step(prev: float | None, sample: float, alpha: float) -> float:
    """One EWMA update: ``prev + alpha * (sample - prev)``; ``None`` means no sample yet."""
    if prev is None:
        return sample
    return prev + alpha * (sample - prev)


@dataclass(frozen=True, slots=True)
class Ewma:
    """An immutable EWMA: ``update`` returns a new value, the old one stays valid.

    ``alpha`` weighs the newest sample; 1.0 keeps only the latest sample.
    """

    alpha: float
    value: float | None = None
    count: int = 0

    def __post_init__(self) -> None:
        check_alpha(self.alpha)

    def update(self, sample: float) -> Ewma:
        return Ewma(self.alpha, ewma_step(self.value, sample, self.alpha), self.count + 1)

    def get(self, default: float = 0.0) -> float:
        """The average, or ``default`` before the first sample."""
        return default if self.value is None else self.value
