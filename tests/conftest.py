"""Shared test helpers: start services as real processes on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edgesplit.procs import ServiceProcess, start_service

__all__ = ["ServiceProcess", "start_service"]

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def service_factory(tmp_path: Path) -> Iterator[object]:
    started: list[ServiceProcess] = []

    def factory(name: str, *args: str, **kw: object) -> ServiceProcess:
        sp = start_service(name, tmp_path, args, **kw)  # type: ignore[arg-type]
        started.append(sp)
        return sp

    yield factory
    for sp in started:
        sp.stop()
