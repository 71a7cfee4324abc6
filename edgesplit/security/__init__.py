"""Security for edgesplit (docs/architecture.md §5.3, §5.4): signed assignments, encrypted
activation frames, encrypted shards with wrapped keys, TLS material.

A pure bytes-level API: no grpc or torch imports. Callers serialize protobuf
messages to bytes; errors carry their status code (``err.code``, an
``edgesplit.errors.Code``) for the RPC boundary to map.
"""

from edgesplit.security.channel import AeadName, FrameOpener, FrameSealer, LinkKeys
from edgesplit.security.errors import (
    BadSignature,
    ExpiredAssignment,
    FrameRejected,
    KeyMaterialError,
    KeyUnwrapError,
    SecurityError,
    ShardDecryptError,
    StaleEpoch,
    UnknownSigner,
    WrongNode,
)
from edgesplit.security.header import FrameHeader
from edgesplit.security.shards import decrypt_shard, encrypt_shard, unwrap_key, wrap_key
from edgesplit.security.signing import (
    AssignmentVerdict,
    check_assignment,
    payload_digest,
    sign_envelope,
    trusted_keys,
    verify_envelope,
)

__all__ = [
    "AeadName",
    "AssignmentVerdict",
    "BadSignature",
    "ExpiredAssignment",
    "FrameHeader",
    "FrameOpener",
    "FrameRejected",
    "FrameSealer",
    "KeyMaterialError",
    "KeyUnwrapError",
    "LinkKeys",
    "SecurityError",
    "ShardDecryptError",
    "StaleEpoch",
    "UnknownSigner",
    "WrongNode",
    "check_assignment",
    "decrypt_shard",
    "encrypt_shard",
    "payload_digest",
    "sign_envelope",
    "trusted_keys",
    "unwrap_key",
    "verify_envelope",
    "wrap_key",
]
