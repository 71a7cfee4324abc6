"""Typed configuration of the orchestrator service."""

from __future__ import annotations

from dataclasses import dataclass

from edgesplit.rpc.config import ServiceConfig


@dataclass(frozen=True)
class OrchestratorConfig(ServiceConfig):
    """Orchestrator (AO): the adaptive control loop."""
