"""The compose stack's one-shot init job (deploy/compose.yaml, service ``init``).

Idempotent, so it runs on every ``up``:

1. the model: shards of the model mounted at /model (``EDGESPLIT_MODEL_DIR`` on
   the host), or of a seeded tiny model it writes itself, into /data/shards;
2. /data/profile.json (the planner's input) and /data/inventory.json: the
   compose nodes with their addresses and trust (the entry is trusted, the rest
   not) and a memory size that makes the plan split the model across nodes;
3. ``edgesplit pki init`` into /pki, whose per-component directories are one
   volume each (/pki/ca only here), then hands every file to the image user.

Settings (environment): EDGESPLIT_NODES (comma-separated ids; the first is the
entry), EDGESPLIT_CLIENTS, EDGESPLIT_NODE_MEMORY_FRACTION (each node's memory as
a fraction of what the model needs — weights and a full-context KV cache: below
1 forces a split, and at 0.6 any two nodes still hold it), EDGESPLIT_TINY_*.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from edgesplit.model.profile import profile_json
from edgesplit.model.shard import MANIFEST, shard_model
from edgesplit.model.tiny import write_tiny_model
from edgesplit.security.pki import init_pki
from edgesplit.testbed import node_agreement_key

DATA, PKI, MODEL = Path("/data"), Path("/pki"), Path("/model")
OWNER = (int(os.environ.get("EDGESPLIT_UID", "10001")), int(os.environ.get("EDGESPLIT_GID", "10001")))
STATE = Path("/state")  # the node agents' state volumes, /state/<node id>
HOST_CLIENT = "host"  # /pki/clients/host is a directory on the host


def env_list(name: str, default: str) -> list[str]:
    return [v.strip() for v in os.environ.get(name, default).split(",") if v.strip()]


def ensure_shards() -> Path:
    shards = DATA / "shards"
    if (shards / MANIFEST).exists():
        print(f"init: shards present in {shards}")
        return shards
    source = MODEL
    if not (MODEL / "config.json").exists():
        source = DATA / "model"
        write_tiny_model(source, family=os.environ.get("EDGESPLIT_TINY_FAMILY", "llama"),
                         layers=int(os.environ.get("EDGESPLIT_TINY_LAYERS", "8")),
                         hidden=int(os.environ.get("EDGESPLIT_TINY_HIDDEN", "256")),
                         heads=4, kv_heads=2, seed=0)
        print(f"init: no model mounted at {MODEL}; wrote a seeded tiny model to {source}")
    manifest = shard_model(source, shards)
    print(f"init: {len(manifest.shards)} shards of {source} -> {shards}")
    return shards


def model_bytes(profile: dict[str, Any], context: int) -> int:
    """What the planner reserves for the model: weights and a full-context KV cache."""
    parts = [profile["embed"], profile["head"], *profile["layers"]]
    return sum(int(p["weight_bytes"]) + int(p["kv_bytes_per_token"]) * context for p in parts)


def inventory(nodes: list[str], profile: dict[str, Any], context: int,
              fraction: float) -> dict[str, Any]:
    memory = int(model_bytes(profile, context) * fraction)
    entry = nodes[0]
    return {"nodes": [{"id": n, "trust": "trusted" if n == entry else "untrusted",
                       "memory_bytes": memory, "flops_per_s": 1e9, "address": f"{n}:50051",
                       "trusted_by": [entry] if n == entry else []} for n in nodes],
            "trusted_nodes": [entry]}


def hand_over(root: Path, owner: tuple[int, int]) -> None:
    for path in [root, *root.rglob("*")]:
        os.chown(path, *owner)


def main() -> int:
    nodes = env_list("EDGESPLIT_NODES", "node-a,node-b,node-c")
    clients = env_list("EDGESPLIT_CLIENTS", f"client,{HOST_CLIENT}")
    shards = ensure_shards()
    profile = profile_json(str(shards))
    (DATA / "profile.json").write_text(json.dumps(profile, indent=1))
    fraction = float(os.environ.get("EDGESPLIT_NODE_MEMORY_FRACTION", "0.6"))
    config = json.loads((shards / "config.json").read_text())
    inv = inventory(nodes, profile, int(config.get("max_position_embeddings", 2048)), fraction)
    # Enrol each node's X25519 key: made here in the node's own state volume
    # (where its agent loads it), so the broadcaster signs for that key only.
    for entry in inv["nodes"]:
        state = STATE / entry["id"]
        if state.is_dir():
            entry["agreement_public_key"] = node_agreement_key(state, entry["id"])
            hand_over(state, OWNER)
    (DATA / "inventory.json").write_text(json.dumps(inv, indent=1))
    print(f"init: inventory of {nodes} (entry {nodes[0]} trusted), "
          f"{inv['nodes'][0]['memory_bytes'] / 2**20:.1f} MiB each")
    for comp in init_pki(PKI, nodes=nodes, clients=clients):
        print(f"init: {comp.identity.uri} -> {comp.directory}")
    hand_over(DATA, OWNER)
    host_dir = PKI / "clients" / HOST_CLIENT
    host = host_dir.stat()  # a bind mount: its files go to whoever owns it on the host
    for d in [PKI / "ca", *(p for role in ("services", "nodes", "clients")
                            for p in (PKI / role).iterdir())]:
        hand_over(d, (host.st_uid, host.st_gid) if d == host_dir and host.st_uid else OWNER)
    print("init: done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
