"""Streamed text pieces add up to the whole answer, multi-byte characters too."""

from __future__ import annotations

import random
from pathlib import Path

from transformers import AutoTokenizer

from edgesplit.model.tiny import write_tiny_model
from services.node_agent.inference import IncrementalText


def test_pieces_join_to_the_full_decode(tmp_path: Path) -> None:
    write_tiny_model(tmp_path, layers=1, hidden=16, heads=2, kv_heads=1)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    prompt = tok.encode("Edge: ")
    rng = random.Random(5)
    answers = [tok.encode("café, naïve 中文 — smart city ✓"),
               [rng.randrange(3, tok.vocab_size) for _ in range(60)]]
    for answer in answers:
        ids, pieces = list(prompt), []
        detok = IncrementalText(tok, len(prompt))
        for t in answer:
            ids.append(t)
            pieces.append(detok.next(ids))
        full = tok.decode(answer, skip_special_tokens=True)
        assert full.startswith("".join(pieces))
        if not full.endswith("\ufffd"):
            assert "".join(pieces) == full
