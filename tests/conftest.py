"""Shared test helpers: services start as real processes on 127.0.0.1
(``edgesplit.procs``, re-exported here for the tests)."""

from __future__ import annotations

from edgesplit.procs import ServiceProcess, start_service

__all__ = ["ServiceProcess", "start_service"]
