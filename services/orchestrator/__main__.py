"""``python -m services.orchestrator --monitor A --split-reviser B --broadcaster C``"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from edgesplit.rpc.config import load_config
from edgesplit.rpc.server import Registration, RunningServer, run_service
from edgesplit.rpc.transport import Transport, TransportSettings
from edgesplit.v1 import orchestrator_pb2_grpc
from services.orchestrator.config import OrchestratorConfig
from services.orchestrator.loop import ControlLoop
from services.orchestrator.servicer import OrchestratorServicer
from services.orchestrator.store import Store


async def serve(config: OrchestratorConfig) -> None:
    store = Store(config.db)
    loop = ControlLoop(config, store, Transport(TransportSettings.of(config)))
    tasks: list[asyncio.Task[None]] = []

    async def on_ready(_: RunningServer) -> None:
        # Without its three peers the orchestrator still serves Status and
        # History (of a resumed store); the loop starts when they are named.
        if config.monitor and config.split_reviser and config.broadcaster:
            tasks.append(asyncio.create_task(loop.run()))

    async def on_stop() -> None:
        for t in tasks:
            t.cancel()
        await loop.close()
        store.close()

    regs = [Registration(orchestrator_pb2_grpc.add_OrchestratorServicer_to_server,
                         OrchestratorServicer(loop), "edgesplit.v1.Orchestrator")]
    await run_service(config, regs, on_ready=on_ready, on_stop=on_stop)


def main(argv: Sequence[str] | None = None) -> int:
    config = load_config(OrchestratorConfig, argv, prog="python -m services.orchestrator")
    asyncio.run(serve(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
