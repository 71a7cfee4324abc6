"""``python -m services.gateway --listen HOST:PORT --model-dir SHARDS --monitor ADDR``"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

import uvicorn

from edgesplit.rpc.config import load_config
from edgesplit.rpc.transport import Transport, TransportSettings
from services.gateway.app import create_app
from services.gateway.config import GatewayConfig

log = logging.getLogger("services.gateway")


def bind(listen: str) -> socket.socket:
    """The listening socket, bound before uvicorn starts so port 0 works and
    the ready file can name the real port."""
    host, _, port = listen.rpartition(":")
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host.strip("[]") or "127.0.0.1", int(port)))
    return sock


async def serve(config: GatewayConfig) -> None:
    transport = Transport(TransportSettings(config.tls_ca, config.tls_cert, config.tls_key,
                                            config.max_message_bytes))
    sock = bind(config.listen)
    server = uvicorn.Server(uvicorn.Config(
        create_app(config, transport), log_level=config.log_level.lower(),
        timeout_graceful_shutdown=int(config.grace_s), access_log=False))

    async def announce() -> None:
        while not server.started:
            await asyncio.sleep(0.02)
        host, port = sock.getsockname()[:2]
        log.info("gateway serving the OpenAI API on http://%s:%d", host, port)
        if config.ready_file:
            Path(config.ready_file).write_text(f"{host}:{port}")

    notice = asyncio.create_task(announce())
    try:
        await server.serve(sockets=[sock])  # handles SIGTERM/SIGINT: drains, then returns
    finally:
        notice.cancel()


def main(argv: Sequence[str] | None = None) -> int:
    config = load_config(GatewayConfig, argv, prog="python -m services.gateway")
    logging.basicConfig(level=config.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not config.model_dir:
        print("--model-dir is required (the tokenizer comes from it)", file=sys.stderr)
        return 2
    asyncio.run(serve(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
