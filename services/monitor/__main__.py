"""``python -m services.monitor --listen HOST:PORT [--inventory FILE] [--enroll-open]
[--profile FILE.json] [--report-interval-s S]``"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Sequence

from edgesplit.core.inventory import NodeInventory
from edgesplit.core.monitor import MonitorConfig as ReducerConfig
from edgesplit.rpc.config import load_config
from edgesplit.rpc.server import Registration, RunningServer, run_service
from edgesplit.v1 import monitor_pb2_grpc
from services.monitor.config import MonitorConfig
from services.monitor.hub import MonitorHub
from services.monitor.loaders import load_inventory, load_profile
from services.monitor.servicer import MonitorServicer

log = logging.getLogger(__name__)


def build_hub(config: MonitorConfig) -> MonitorHub:
    """The hub from files and flags; a bad file fails here, at start-up, naming itself."""
    reducer = ReducerConfig(
        report_interval_s=config.report_interval_s, missed_cycles=config.missed_cycles,
        alpha=config.alpha, layer_alpha=config.layer_alpha, link_alpha=config.link_alpha,
        latency_alpha=config.latency_alpha, sla_step_budget_s=config.sla_step_budget_s,
        sla_window_s=config.sla_window_s)
    inventory = load_inventory(config.inventory) if config.inventory else NodeInventory(())
    if not inventory.nodes and not config.enroll_open:
        log.warning("no --inventory and --enroll-open is off: every report will be refused")
    profile = load_profile(config.profile) if config.profile else None
    return MonitorHub(reducer, inventory, enroll_open=config.enroll_open,
                      default_flops_per_s=config.default_flops_per_s,
                      max_open_enrolments=config.max_open_enrolments, profile=profile)


def registrations(config: MonitorConfig, hub: MonitorHub) -> list[Registration]:
    # Client certificates are only required (and so only checked) with cert + CA (mTLS).
    servicer = MonitorServicer(hub, verify_identity=bool(config.tls_cert and config.tls_ca))
    return [Registration(monitor_pb2_grpc.add_MonitorServicer_to_server, servicer,
                         "edgesplit.v1.Monitor")]


async def serve(config: MonitorConfig) -> None:
    hub = build_hub(config)
    tasks: list[asyncio.Task[None]] = []

    async def on_ready(_: RunningServer) -> None:
        tasks.append(asyncio.create_task(hub.run()))

    async def on_stop() -> None:
        hub.close()
        for t in tasks:
            t.cancel()

    await run_service(config, registrations(config, hub), on_ready=on_ready, on_stop=on_stop)


def main(argv: Sequence[str] | None = None) -> int:
    config = load_config(MonitorConfig, argv, prog="python -m services.monitor")
    asyncio.run(serve(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
