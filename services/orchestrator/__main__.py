"""``python -m services.orchestrator --listen HOST:PORT``"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from edgesplit.rpc.config import load_config
from edgesplit.rpc.server import Registration, run_service
from edgesplit.v1 import orchestrator_pb2_grpc
from services.orchestrator.config import OrchestratorConfig


def registrations(config: OrchestratorConfig) -> list[Registration]:
    # Methods not built yet answer the generated servicer's UNIMPLEMENTED.
    return [
        Registration(orchestrator_pb2_grpc.add_OrchestratorServicer_to_server, orchestrator_pb2_grpc.OrchestratorServicer(), "edgesplit.v1.Orchestrator"),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    config = load_config(OrchestratorConfig, argv, prog="python -m services.orchestrator")
    asyncio.run(run_service(config, registrations(config)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
