"""``python -m services.monitor --listen HOST:PORT``"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from edgesplit.rpc.config import load_config
from edgesplit.rpc.server import Registration, run_service
from edgesplit.v1 import monitor_pb2_grpc
from services.monitor.config import MonitorConfig


def registrations(config: MonitorConfig) -> list[Registration]:
    # Methods not built yet answer the generated servicer's UNIMPLEMENTED.
    return [
        Registration(monitor_pb2_grpc.add_MonitorServicer_to_server, monitor_pb2_grpc.MonitorServicer(), "edgesplit.v1.Monitor"),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    config = load_config(MonitorConfig, argv, prog="python -m services.monitor")
    asyncio.run(run_service(config, registrations(config)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
