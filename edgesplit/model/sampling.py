"""Next-token choice at the entry node: greedy, or temperature + top-p.

Each request gets its own ``Sampler`` with a ``torch.Generator`` seeded from
the request, so a replay (after a hop failure) or a rerun with the same seed
draws the same tokens. Sampling runs on CPU in float32: CUDA and CPU
generators differ, and the entry's choice must not depend on where the head ran.
"""

from __future__ import annotations

import torch

from edgesplit.model.base import SamplingParams


class Sampler:
    def __init__(self, params: SamplingParams) -> None:
        self.params = params
        self._stop = frozenset(params.stop_token_ids)
        self._gen = torch.Generator(device="cpu")
        self._gen.manual_seed(params.seed)

    def choose(self, logits: torch.Tensor) -> int:
        """Pick a token id from the logits of the last position (shape ``[vocab]``)."""
        if logits.dim() != 1:
            raise ValueError(f"expected logits of shape [vocab], got {tuple(logits.shape)}")
        if self.params.temperature == 0.0:
            # Same rule as transformers' greedy search: first index of the max.
            return int(torch.argmax(logits).item())
        return sample_top_p(logits, self.params.temperature, self.params.top_p, self._gen)

    def is_stop(self, token: int) -> bool:
        return token in self._stop


def sample_top_p(
    logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator
) -> int:
    """Nucleus sampling: keep the smallest set of most likely tokens whose
    probability reaches ``top_p`` (always at least one), renormalise, draw."""
    probs = torch.softmax(logits.detach().to("cpu", torch.float32) / temperature, dim=-1)
    if top_p < 1.0:
        sorted_p, order = torch.sort(probs, descending=True, stable=True)
        cum = torch.cumsum(sorted_p, dim=-1)
        # Drop a token when the mass before it already reaches top_p.
        drop = (cum - sorted_p) >= top_p
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter_(0, order, sorted_p)
    return int(torch.multinomial(probs, 1, generator=generator).item())
