"""``python -m services.split_reviser --listen HOST:PORT``"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from edgesplit.rpc.config import load_config
from edgesplit.rpc.server import Registration, run_service
from edgesplit.v1 import split_reviser_pb2_grpc
from services.split_reviser.config import SplitReviserConfig
from services.split_reviser.servicer import Limits, SplitReviserServicer


def registrations(config: SplitReviserConfig) -> list[Registration]:
    return [Registration(split_reviser_pb2_grpc.add_SplitReviserServicer_to_server,
                         SplitReviserServicer(Limits(config.max_nodes, config.max_layers,
                                                     config.max_routes)),
                         "edgesplit.v1.SplitReviser")]


def main(argv: Sequence[str] | None = None) -> int:
    config = load_config(SplitReviserConfig, argv, prog="python -m services.split_reviser")
    asyncio.run(run_service(config, registrations(config)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
