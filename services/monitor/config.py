"""Typed configuration of the monitor service."""

from __future__ import annotations

from dataclasses import dataclass

from edgesplit.rpc.config import ServiceConfig


@dataclass(frozen=True)
class MonitorConfig(ServiceConfig):
    """Monitor (CP): folds node reports into the environment state E(t)."""
