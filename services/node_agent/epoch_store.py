"""What a node must remember about epochs across restarts (docs/architecture.md §12).

An agent that forgot its epochs after a restart would accept an old but
unexpired assignment (rolling the node back) or an aborted one (splitting it
from its peers). So before it acknowledges a Prepare, Commit or Abort it
writes down:

* the high-water mark: the highest epoch it ever prepared or saw aborted, and
  the digest of the assignment prepared at that epoch (a retried Prepare of
  those exact bytes is still accepted after a restart);
* the spent epochs: those aborted (bounded: all of them lie at or below the mark);
* the committed assignment, signed envelope as received, so a restarted agent
  verifies it again and serves the same epoch.

The file is replaced atomically (temp file, fsync, rename, directory fsync:
``write_secret_file``), so a crash leaves the old record or the new one.
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from edgesplit.security.keys import write_secret_file
from edgesplit.v1 import node_agent_pb2 as na

log = logging.getLogger(__name__)
MAX_SPENT = 64  # older aborted epochs are below the mark anyway
FILE_NAME = "epochs.json"


@dataclass
class EpochRecord:
    high_water: int = 0
    high_digest: bytes = b""  # digest prepared at high_water; b"" once spent or unknown
    spent: list[int] = field(default_factory=list)
    committed: na.SignedEnvelope | None = None

    def prepared(self, epoch: int, digest: bytes) -> None:
        self.high_water, self.high_digest = epoch, digest

    def aborted(self, epoch: int) -> None:
        if epoch >= self.high_water:
            self.high_water, self.high_digest = epoch, b""
        if epoch not in self.spent:
            self.spent = sorted([*self.spent, epoch])[-MAX_SPENT:]

    def committed_as(self, epoch: int, envelope: na.SignedEnvelope) -> None:
        self.high_water = max(self.high_water, epoch)
        self.committed = envelope

    def to_json(self) -> bytes:
        env = self.committed
        raw = {
            "high_water": self.high_water,
            "high_digest": self.high_digest.hex(),
            "spent": self.spent,
            "committed": base64.b64encode(env.SerializeToString()).decode() if env else "",
        }
        return json.dumps(raw, indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> EpochRecord:
        raw = json.loads(data)
        committed = na.SignedEnvelope.FromString(base64.b64decode(raw["committed"])) \
            if raw.get("committed") else None
        return cls(int(raw["high_water"]), bytes.fromhex(raw.get("high_digest", "")),
                   [int(e) for e in raw.get("spent", [])], committed)


class EpochStore:
    """The record on disk under the node's state directory."""

    def __init__(self, state_dir: str | Path) -> None:
        self.path = Path(state_dir) / FILE_NAME

    def load(self) -> EpochRecord:
        if not self.path.exists():
            return EpochRecord()
        # A record that does not parse is not silently reset to zero: that
        # would re-open every epoch. The operator must look.
        return EpochRecord.from_json(self.path.read_bytes())

    def save(self, record: EpochRecord) -> None:
        write_secret_file(self.path, record.to_json())
