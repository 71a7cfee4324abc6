"""Model side of edgesplit: profiles, per-layer shards, segment runners.

Importing this package loads no torch: ``base``, ``errors``, ``fake``,
``pipeline`` and ``profile`` are pure Python, and the torch-backed names below
are imported on first use, so control-plane code can depend on the interface
alone (docs/architecture.md §10.5).
"""

from __future__ import annotations

import importlib
from typing import Any

from edgesplit.model.base import SamplingParams, SegmentRunner, SegmentSpec, WireTensor
from edgesplit.model.errors import (
    BadFrame,
    BadFrameDtype,
    BadFrameShape,
    BadTokens,
    ContextTooLong,
    ModelError,
    ModelFileError,
    NotServed,
    PositionMismatch,
    SessionNotFound,
    ShardDigestMismatch,
    UnsupportedModel,
)

_LAZY = {
    "TorchSegmentRunner": "edgesplit.model.runner",
    "FakeSegmentRunner": "edgesplit.model.fake",
    "ModelDir": "edgesplit.model.loader",
    "Manifest": "edgesplit.model.shard",
    "ShardDir": "edgesplit.model.shard",
    "shard_model": "edgesplit.model.shard",
    "profile_model": "edgesplit.model.profile",
    "write_tiny_model": "edgesplit.model.tiny",
    "Sampler": "edgesplit.model.sampling",
}

__all__ = [
    "BadFrame",
    "BadFrameDtype",
    "BadFrameShape",
    "BadTokens",
    "ContextTooLong",
    "FakeSegmentRunner",
    "Manifest",
    "ModelDir",
    "ModelError",
    "ModelFileError",
    "NotServed",
    "PositionMismatch",
    "Sampler",
    "SamplingParams",
    "SegmentRunner",
    "SegmentSpec",
    "SessionNotFound",
    "ShardDigestMismatch",
    "ShardDir",
    "TorchSegmentRunner",
    "UnsupportedModel",
    "WireTensor",
    "profile_model",
    "shard_model",
    "write_tiny_model",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'edgesplit.model' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
