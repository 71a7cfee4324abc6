"""``python -m services.node_agent --node-id ID --listen HOST:PORT --shard-dir DIR
--control-public-key PEM``"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgesplit.core.batching import BatchLimits
from edgesplit.core.types import Privacy, Segment
from edgesplit.rpc.config import load_config
from edgesplit.rpc.server import Registration, RunningServer, run_service
from edgesplit.rpc.transport import Transport, TransportSettings
from edgesplit.security.keys import ensure_dev_keys, load_signing_public_key, public_bytes
from edgesplit.security.signing import trusted_keys
from edgesplit.v1 import inference_pb2_grpc, node_agent_pb2_grpc, testbed_admin_pb2_grpc
from services.node_agent import metrics as m
from services.node_agent.compute import Compute
from services.node_agent.config import NodeAgentConfig
from services.node_agent.control import Control
from services.node_agent.emulation import EmulatedNodeAgent, Emulator, TestbedAdminServicer
from services.node_agent.entry import Entry, EntrySettings
from services.node_agent.epoch_store import EpochStore
from services.node_agent.epochs import EpochBook
from services.node_agent.inference import InferenceServicer
from services.node_agent.link_salt import SaltBook, greeter
from services.node_agent.linkstream import LinkPool
from services.node_agent.queue import AdmissionQueue, QueueLimits
from services.node_agent.reporter import make_reporter
from services.node_agent.servicer import AgentIdentity, NodeAgentServicer, housekeeping
from services.node_agent.shards import ShardStore, cache_dir
from services.node_agent.stage import Stage

log = logging.getLogger(__name__)


@dataclass
class Agent:
    """The parts of one node agent, wired together (``build``)."""

    control: Control
    compute: Compute
    links: LinkPool
    stage: Stage
    entry: Entry
    emulator: Emulator | None  # the test bed's, when --testbed-admin
    queue: AdmissionQueue | None = None  # the entry's admission queue (Inference.Generate)

    async def close(self) -> None:
        self.control.book.salts.close()
        await self.stage.close()
        await self.links.close()
        self.compute.close()


def torch_runner_factory(config: NodeAgentConfig, store: ShardStore | None = None) -> Any:
    """Runners load only their own shards, checking the assignment's digests."""

    def make(seg: Segment, digests: Mapping[str, str]) -> Any:
        with IMPORT_LOCK:
            from edgesplit.model.runner import TorchSegmentRunner
            from edgesplit.model.shard import ShardDir

        source: Any
        if store is not None:  # hook: local or fetched shards (services/node_agent/shards.py)
            source = store.source(digests)
        elif not config.shard_dir:
            raise FileNotFoundError("no --shard-dir configured")
        else:
            source = ShardDir(config.shard_dir, digests)
        with IMPORT_LOCK:  # the first build imports the family's modeling module
            return TorchSegmentRunner(source, seg.start, seg.end, seg.has_embed, seg.has_head,
                                      device=config.device, dtype=config.dtype or None)

    return make


def build(config: NodeAgentConfig, make_runner: Any = None,
          transport: Transport | None = None) -> tuple[list[Registration], Agent]:
    """Everything but the event loop. ``transport``: this node's outgoing channels
    (default: from the config's TLS settings), shared by the links, the shard
    fetches and the reporter."""
    transport = transport or Transport(TransportSettings.of(config))
    state = Path(config.state_dir)
    state.mkdir(parents=True, exist_ok=True)
    keys = ensure_dev_keys(state, config.node_id)  # this node's X25519 key, kept across restarts
    signers = trusted_keys(*(load_signing_public_key(p)
                             for p in config.control_public_key.split(",") if p))
    # hook: with a broadcaster, Prepare fetches shards not held locally (shards.py)
    store = ShardStore(config.node_id, keys.agreement, cache_dir(config), config.shard_dir,
                       config.broadcaster, config.rpc_timeout_s, transport
                       ) if config.broadcaster else None
    salts = SaltBook(config.node_id, handshake_timeout_s=config.rpc_timeout_s)
    book = EpochBook(config.node_id, signers, keys.agreement,
                     make_runner or torch_runner_factory(config, store), config.retained_epochs,
                     EpochStore(state), config.max_epoch_step, salts)
    # The test bed's emulation wraps the compute clock, the links and the replies.
    emulator = Emulator(config.serial_device) if config.testbed_admin else None
    compute = Compute(config.torch_threads, emulator)
    links = LinkPool(transport, config.link_window, config.link_stream_lifetime_s,
                     emulator.wrap_link if emulator else None)
    chunk = max(1024, min(config.frame_chunk_bytes, config.max_message_bytes - 64 * 1024))
    salts.greeter = greeter(config.node_id, salts, links, config.rpc_timeout_s)
    limits = BatchLimits(config.batch_max_sessions, config.batch_max_tokens,
                         config.prefill_chunk_tokens, int(config.kv_budget_mb * (1 << 20)),
                         config.ring_waves)
    stage = Stage(config.node_id, book, compute, links, chunk, limits)
    resume(book)
    control = Control(book, store)
    entry = Entry(EntrySettings(config.node_id, config.step_timeout_s, config.orchestrator,
                                config.sla_step_s, Privacy[config.default_privacy.upper()]),
                  control, stage)
    queue = AdmissionQueue(QueueLimits(config.max_sessions, config.max_waiting,
                                       config.max_queue_wait_s))
    agent = Agent(control, compute, links, stage, entry, emulator, queue)
    args = (AgentIdentity(config.node_id, config.device, public_bytes(keys.agreement),
                          config.probe_max_bytes), control, stage)
    servicer = EmulatedNodeAgent(emulator, *args) if emulator else NodeAgentServicer(*args)
    regs = [
        Registration(node_agent_pb2_grpc.add_NodeAgentServicer_to_server, servicer,
                     "edgesplit.v1.NodeAgent"),
        Registration(inference_pb2_grpc.add_InferenceServicer_to_server,
                     InferenceServicer(config, entry, queue), "edgesplit.v1.Inference"),
    ]
    if emulator is not None:
        regs.append(Registration(testbed_admin_pb2_grpc.add_TestbedAdminServicer_to_server,
                                 TestbedAdminServicer(emulator), "edgesplit.v1.TestbedAdmin"))
    return regs, agent


def resume(book: EpochBook) -> None:
    """Serve the epoch committed before a restart (its runners load now)."""
    try:
        state = book.resume()
    except Exception:
        log.exception("could not resume the committed epoch %d; waiting for a rollout",
                      book.record.high_water)
        return
    if state is not None:
        m.EPOCH.set(state.epoch)
        log.info("resumed committed epoch %d", state.epoch)


# transformers' lazy modules are not safe to import from two threads at once:
# the background preload and a first Prepare take turns.
IMPORT_LOCK = threading.Lock()


def _preload(shard_dir: str) -> None:
    """Pay torch's and the model family's import cost at start, not in the
    first Prepare: a rollout's time to commit is what the SLA waits on."""
    with IMPORT_LOCK:
        _warm(shard_dir)


def _warm(shard_dir: str) -> None:
    import torch

    from edgesplit.model import runner

    if shard_dir and (Path(shard_dir) / "config.json").exists():
        from edgesplit.model.loader import read_config

        cfg = read_config(shard_dir)
        family = str(cfg.get("model_type", ""))
        if family in runner._CLASS_PREFIX:
            layer_cls, _, rotary_cls = runner._family_classes(family)
            hf = runner.hf_config(cfg)
            with torch.device("meta"):
                layer_cls(hf, layer_idx=0)  # first construction initialises lazily-built state
            rotary_cls(config=hf)


async def serve(config: NodeAgentConfig) -> None:
    transport = Transport(TransportSettings.of(config))
    regs, agent = build(config, transport=transport)
    tasks: list[asyncio.Task[None]] = []
    # hook: with --monitor, measure on the serving path and push reports (reporter.py)
    reporter = make_reporter(config, agent, transport) if config.monitor else None

    async def on_ready(_: RunningServer) -> None:
        tasks.append(asyncio.create_task(housekeeping(agent.control,
                                                      config.session_idle_timeout_s)))
        if reporter is not None:
            tasks.append(asyncio.create_task(reporter.run()))
        # Import torch/transformers now, in the background, so the first
        # Prepare (and so the first rollout) does not pay for it. A daemon
        # thread, not the loop's executor: shutdown must not wait for an
        # import that a loaded machine stretches to seconds.
        threading.Thread(target=_preload, args=(config.shard_dir,), name="preload",
                         daemon=True).start()

    async def on_stop() -> None:
        for t in tasks:
            t.cancel()
        await agent.close()

    await run_service(config, regs, on_ready=on_ready, on_stop=on_stop)


def main(argv: Sequence[str] | None = None) -> int:
    config = load_config(NodeAgentConfig, argv, prog="python -m services.node_agent")
    # The compute thread and the event loop share the GIL: hand it over within
    # 0.2 ms instead of 5 ms, so a frame's I/O never holds up the layers long.
    sys.setswitchinterval(0.0002)
    asyncio.run(serve(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
