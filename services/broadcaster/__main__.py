"""``python -m services.broadcaster --listen HOST:PORT [--shard-dir DIR]
[--signing-key PEM] [--inventory FILE]``"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgesplit.rpc.config import load_config
from edgesplit.rpc.server import Registration, run_service
from edgesplit.rpc.transport import Transport, TransportSettings
from edgesplit.security.keys import ensure_dev_keys, load_signing_key
from edgesplit.v1 import broadcaster_pb2_grpc
from services.broadcaster.config import BroadcasterConfig
from services.broadcaster.inventory import InventoryFile
from services.broadcaster.nodes import NodeClients
from services.broadcaster.registry import Registry
from services.broadcaster.rollout import Rollout
from services.broadcaster.servicer import BroadcasterServicer

log = logging.getLogger(__name__)


def signing_key(config: BroadcasterConfig) -> Ed25519PrivateKey:
    if config.signing_key:
        return load_signing_key(config.signing_key)
    keys_dir = Path(config.state_dir) / "keys"
    # Dev default: nodes must be given keys_dir/control.ed25519.pub.pem.
    log.warning("no --signing-key: using the development key in %s", keys_dir)
    return ensure_dev_keys(keys_dir, "control").signing


def build(config: BroadcasterConfig, transport: Transport | None = None
          ) -> tuple[Rollout, list[Registration]]:
    """Everything but the event loop; also used by in-process tests. ``transport``:
    the channels to node agents (default: from the config's TLS settings)."""
    transport = transport or Transport(TransportSettings.of(config, config.commit_attempts))
    state = Path(config.state_dir)
    registry = Registry(config.registry_dir or state / "registry")
    if config.shard_dir:
        registry.import_shard_dir(config.shard_dir)  # before serving: Apply needs the model
    clients = NodeClients(transport, config.rpc_timeout_s)
    rollout = Rollout(registry, signing_key(config), clients, state / "rollout.json",
                      InventoryFile(config.inventory), config.assignment_ttl_s,
                      config.max_epoch_step)
    servicer = BroadcasterServicer(config, rollout)
    return rollout, [Registration(broadcaster_pb2_grpc.add_BroadcasterServicer_to_server,
                                  servicer, "edgesplit.v1.Broadcaster")]


async def serve(config: BroadcasterConfig) -> None:
    rollout, regs = build(config, Transport(TransportSettings.of(config, config.commit_attempts)))
    await run_service(config, regs, on_stop=rollout.clients.close)


def main(argv: Sequence[str] | None = None) -> int:
    config = load_config(BroadcasterConfig, argv, prog="python -m services.broadcaster")
    asyncio.run(serve(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
