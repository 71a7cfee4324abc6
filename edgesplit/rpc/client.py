"""Deprecated: channels come from :class:`edgesplit.rpc.transport.Transport`.

These shims remain only so code written against them keeps importing while it
moves to a Transport built once per component; ``tests/unit/test_channel_rule.py``
fails for any caller outside ``edgesplit/rpc``.
"""

from __future__ import annotations

import grpc

from edgesplit.rpc.transport import DEFAULT_MAX_MESSAGE, Transport, TransportSettings


def aio_channel(target: str, max_message_bytes: int = DEFAULT_MAX_MESSAGE) -> grpc.aio.Channel:
    """Deprecated: plaintext channel; use ``Transport(settings).aio_channel``."""
    return Transport(TransportSettings(max_message_bytes=max_message_bytes)).aio_channel(target)


def sync_channel(target: str, max_message_bytes: int = DEFAULT_MAX_MESSAGE) -> grpc.Channel:
    """Deprecated: plaintext channel; use ``Transport(settings).sync_channel``."""
    return Transport(TransportSettings(max_message_bytes=max_message_bytes)).sync_channel(target)
