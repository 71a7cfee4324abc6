"""The shards a node needs: found locally, or fetched from the registry.

A shard is known by the SHA-256 of its plaintext (from the signed assignment).
Prepare looks for it in the local ``--shard-dir`` and then in a content-
addressed cache under the state directory; only if both miss does it stream
the encrypted blob from the broadcaster's ``FetchShard`` (the transport retries
a stream that fails before its first chunk; one dropped later resumes from the
last offset received), unwrap the shard key carried in
the assignment with this node's X25519 key, decrypt chunk by chunk into a temp
file, check size and digest, and only then publish it into the cache. A
failed fetch leaves nothing behind, so the node is exactly as before.

The ``meta`` shard (config and tokenizer files, ``edgesplit.model.bundle``)
is cached unpacked as ``<sha256>.d/`` because transformers reads directories.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from edgesplit.errors import Code, DomainError, Precondition
from edgesplit.model import bundle
from edgesplit.model.errors import ModelFileError, ShardDigestMismatch
from edgesplit.rpc.assignments import shard_key_context
from edgesplit.rpc.transport import Transport
from edgesplit.security.shards import ShardDecryptor, unwrap_key
from edgesplit.v1 import broadcaster_pb2 as bpb
from edgesplit.v1 import broadcaster_pb2_grpc as bpb_grpc
from edgesplit.v1 import node_agent_pb2 as na

if TYPE_CHECKING:
    import torch

    from services.node_agent.config import NodeAgentConfig
    from services.node_agent.epochs import EpochState

log = logging.getLogger(__name__)
_PARALLEL_FETCHES = 4  # enough to fill a link; more only adds memory and disk seeks


def cache_dir(config: NodeAgentConfig) -> Path:
    return Path(config.state_dir) / "shards"


def model_files_dir(config: NodeAgentConfig, state: EpochState | None) -> str:
    """Where an entry node's tokenizer files are: the local shard directory,
    else the ``meta`` shard the committed assignment named."""
    if config.shard_dir:
        return config.shard_dir
    for ref in state.assignment.shards if state is not None else ():
        if ref.name == bundle.META_SHARD:
            return str(cache_dir(config) / f"{ref.sha256}.d")
    raise ModelFileError("no --shard-dir and no model files in the committed assignment")


class FetchFailed(DomainError):
    """The registry refused or failed a fetch; Prepare fails with the same code."""

    def __init__(self, shard: str, code: grpc.StatusCode, detail: str) -> None:
        super().__init__(f"fetching shard {shard!r}: {code.name}: {detail}")
        self.code = Code[code.name] if code.name in Code.__members__ else Code.UNKNOWN


class StoreSource:
    """A runner's weight source over local and cached shard files, with the
    same checks as ``ShardDir``: the bytes hashed are the bytes loaded."""

    def __init__(self, files_dir: Path, paths: Mapping[str, Path],
                 expected: Mapping[str, str]) -> None:
        from edgesplit.model.loader import read_config

        self.root = files_dir
        self.config = read_config(files_dir)
        self.family = str(self.config["model_type"])
        self.num_layers = int(self.config["num_hidden_layers"])
        self._paths = dict(paths)
        self._expected = dict(expected)

    def read_part(self, part: str) -> dict[str, torch.Tensor]:
        from safetensors.torch import load

        from edgesplit.model.loader import part_of

        path, expected = self._paths.get(part), self._expected.get(part)
        if path is None or expected is None:
            raise ModelFileError(f"shard {part!r} is not part of this node's assignment")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ModelFileError(f"shard {part!r}: {exc}") from exc
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected:
            raise ShardDigestMismatch(part, expected, actual)
        tensors = load(data)
        wrong = [k for k in tensors if part_of(k) != part]
        if wrong:  # a right digest on the wrong file must not load under this part's name
            raise ModelFileError(f"shard {part!r} holds tensors of other parts: {wrong[:3]}")
        return tensors


class _Sink:
    """Decrypt, hash and write one shard's plaintext to a temp file (runs in a
    worker thread, chunk by chunk, so the event loop keeps serving frames)."""

    def __init__(self, key: bytes, ref: na.ShardRef, tmp: Path) -> None:
        self.ref, self.tmp = ref, tmp
        self._dec = ShardDecryptor(key, ref.sha256)
        self._hash = hashlib.sha256()
        self._size = 0
        self._fh = tmp.open("wb")

    def _take(self, plain: bytes) -> None:
        self._size += len(plain)
        if self._size > self.ref.size_bytes:  # stop early rather than fill the disk
            raise ShardDigestMismatch(self.ref.name, self.ref.sha256, "(larger than assigned)")
        self._hash.update(plain)
        self._fh.write(plain)

    def write(self, data: bytes) -> None:
        self._take(self._dec.update(data))

    def finish(self) -> None:
        self._take(self._dec.finalize())  # authenticates the last chunk: no truncation
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        actual = self._hash.hexdigest()
        if actual != self.ref.sha256 or self._size != self.ref.size_bytes:
            raise ShardDigestMismatch(self.ref.name, self.ref.sha256, actual)

    def discard(self) -> None:
        self._fh.close()
        self.tmp.unlink(missing_ok=True)


class ShardStore:
    def __init__(self, node_id: str, agreement_key: X25519PrivateKey, cache: Path,
                 local_dir: str = "", broadcaster: str = "", rpc_timeout_s: float = 10.0,
                 transport: Transport | None = None) -> None:
        self.node_id = node_id
        self._key = agreement_key
        self.cache = cache
        self.cache.mkdir(parents=True, exist_ok=True)
        self._local_dir = Path(local_dir) if local_dir else None
        self._local: dict[str, Path] | None = None  # sha -> file (or dir, for meta)
        self.broadcaster = broadcaster
        self._timeout_s = rpc_timeout_s
        self._transport = transport  # the node's own (its certificate); needed to fetch

    # ---- finding -------------------------------------------------------------
    def _local_index(self) -> dict[str, Path]:
        """Digests of the local shard directory, read once (its manifest's
        digests are re-checked when a runner reads the file)."""
        if self._local is None:
            self._local = {}
            if self._local_dir is not None:
                from edgesplit.model.shard import Manifest

                try:
                    manifest = Manifest.load(self._local_dir)
                    meta = hashlib.sha256(bundle.pack_shard_dir(self._local_dir)).hexdigest()
                except ModelFileError as exc:
                    log.warning("local shard dir unusable, fetching everything: %s", exc)
                else:
                    self._local = {s.sha256: self._local_dir / s.file for s in manifest.shards}
                    self._local[meta] = self._local_dir
        return self._local

    def find(self, ref: na.ShardRef) -> Path | None:
        local = self._local_index().get(ref.sha256)
        if local is not None:
            return local
        cached = self.cache / (f"{ref.sha256}.d" if ref.name == bundle.META_SHARD else ref.sha256)
        return cached if cached.exists() else None

    def source(self, digests: Mapping[str, str]) -> StoreSource:
        """Weight source for a runner of an assignment whose shards are held."""
        refs = {name: na.ShardRef(name=name, sha256=sha) for name, sha in digests.items()}
        meta = refs.pop(bundle.META_SHARD, None)
        files_dir = self.find(meta) if meta is not None else self._local_dir
        if files_dir is None:
            raise ModelFileError("model config not held: no meta shard and no --shard-dir")
        paths = {name: p for name, ref in refs.items() if (p := self.find(ref)) is not None}
        return StoreSource(files_dir, paths, digests)

    # ---- fetching -------------------------------------------------------------
    async def ensure(self, assignment: na.Assignment, timeout_s: float | None) -> tuple[int, int]:
        """Fetch every shard of the assignment not held yet; (fetched, held)."""
        refs = list({r.sha256: r for r in assignment.shards}.values())
        missing = [r for r in refs if self.find(r) is None]
        if not missing:
            return 0, len(refs)
        if not self.broadcaster or self._transport is None:
            raise Precondition(f"shards {[r.name for r in missing]} are not held locally "
                               "and no --broadcaster is configured")
        # The Prepare's own deadline bounds the fetch: the broadcaster aborts then anyway.
        deadline = time.monotonic() + (timeout_s if timeout_s else 10 * self._timeout_s)
        gate = asyncio.Semaphore(_PARALLEL_FETCHES)
        async with self._transport.aio_channel(self.broadcaster) as ch:
            stub = bpb_grpc.BroadcasterStub(ch)

            async def one(ref: na.ShardRef) -> None:
                async with gate:
                    await self._fetch(stub, ref, deadline)

            tasks = [asyncio.create_task(one(r)) for r in missing]
            try:
                await asyncio.gather(*tasks)
            finally:  # first failure: stop the others and let them clean up
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        return len(missing), len(refs) - len(missing)

    async def _fetch(self, stub: Any, ref: na.ShardRef, deadline: float) -> None:
        if not ref.wrapped_key:
            raise Precondition(f"shard {ref.name!r} is not held and its assignment has no key")
        key = unwrap_key(ref.wrapped_key, self._key, shard_key_context(self.node_id, ref.sha256))
        tmp = self.cache / f".{ref.sha256}.{uuid.uuid4().hex[:8]}.part"
        sink = _Sink(key, ref, tmp)
        try:
            await self._stream(stub, ref, sink, deadline)
            await asyncio.to_thread(sink.finish)
            await asyncio.to_thread(self._publish, ref, tmp)
        finally:
            await asyncio.to_thread(sink.discard)
        log.info("fetched shard %s (%s, %d bytes)", ref.name, ref.sha256[:12], ref.size_bytes)

    async def _stream(self, stub: Any, ref: na.ShardRef, sink: _Sink, deadline: float) -> None:
        received = 0
        while True:
            remaining = deadline - time.monotonic()
            request = bpb.FetchShardRequest(sha256=ref.sha256, node_id=self.node_id,
                                            offset=received)
            before = received
            try:
                if remaining <= 0:
                    raise FetchFailed(ref.name, grpc.StatusCode.DEADLINE_EXCEEDED, "no time left")
                total = None
                async for chunk in stub.FetchShard(request, timeout=remaining):
                    if chunk.offset != received:
                        raise FetchFailed(ref.name, grpc.StatusCode.DATA_LOSS,
                                          f"chunk at {chunk.offset}, expected {received}")
                    total = chunk.total_bytes
                    await asyncio.to_thread(sink.write, chunk.data)
                    received += len(chunk.data)
                if total is not None and received != total:
                    raise FetchFailed(ref.name, grpc.StatusCode.DATA_LOSS,
                                      f"stream ended at {received} of {total} bytes")
                return
            except grpc.aio.AioRpcError as exc:
                # The channel already retried (with backoff) a stream that failed
                # before its first chunk; one that broke after progress resumes
                # from `received` on a fresh call, which gets those retries again.
                if exc.code() != grpc.StatusCode.UNAVAILABLE or received == before:
                    raise FetchFailed(ref.name, exc.code(), exc.details() or "") from None

    def _publish(self, ref: na.ShardRef, tmp: Path) -> None:
        if ref.name == bundle.META_SHARD:
            bundle.write_dir(bundle.unpack(tmp.read_bytes()), self.cache / f"{ref.sha256}.d")
        else:
            os.replace(tmp, self.cache / ref.sha256)  # atomic: readers see all or nothing
