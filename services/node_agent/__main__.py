"""``python -m services.node_agent --listen HOST:PORT``"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from edgesplit.rpc.config import load_config
from edgesplit.rpc.server import Registration, run_service
from edgesplit.v1 import node_agent_pb2_grpc
from edgesplit.v1 import inference_pb2_grpc
from services.node_agent.config import NodeAgentConfig


def registrations(config: NodeAgentConfig) -> list[Registration]:
    # Methods not built yet answer the generated servicer's UNIMPLEMENTED.
    return [
        Registration(node_agent_pb2_grpc.add_NodeAgentServicer_to_server, node_agent_pb2_grpc.NodeAgentServicer(), "edgesplit.v1.NodeAgent"),
        Registration(inference_pb2_grpc.add_InferenceServicer_to_server, inference_pb2_grpc.InferenceServicer(), "edgesplit.v1.Inference"),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    config = load_config(NodeAgentConfig, argv, prog="python -m services.node_agent")
    asyncio.run(run_service(config, registrations(config)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
