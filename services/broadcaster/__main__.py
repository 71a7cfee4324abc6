"""``python -m services.broadcaster --listen HOST:PORT``"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from edgesplit.rpc.config import load_config
from edgesplit.rpc.server import Registration, run_service
from edgesplit.v1 import broadcaster_pb2_grpc
from services.broadcaster.config import BroadcasterConfig


def registrations(config: BroadcasterConfig) -> list[Registration]:
    # Methods not built yet answer the generated servicer's UNIMPLEMENTED.
    return [
        Registration(broadcaster_pb2_grpc.add_BroadcasterServicer_to_server, broadcaster_pb2_grpc.BroadcasterServicer(), "edgesplit.v1.Broadcaster"),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    config = load_config(BroadcasterConfig, argv, prog="python -m services.broadcaster")
    asyncio.run(run_service(config, registrations(config)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
