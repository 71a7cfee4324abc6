"""The compose stack's one-shot init job (deploy/compose.yaml, service ``init``).

Idempotent, so it runs on every ``up``:

1. the model: shards of the model mounted at /model (``EDGESPLIT_MODEL_DIR`` on
   the host), or of a seeded tiny model it writes itself, into /data/shards;
2. /data/profile.json (the planner's input) and /data/inventory.json: the
   compose nodes with their addresses and trust (the entry is trusted, the rest
   not) and a memory size that makes the plan split the model across nodes;
3. ``edgesplit pki init`` into /pki, whose per-component directories are one
   volume each (/pki/ca only here), then hands every file to the image user;
   the host's client and admin directories are bind mounts and go to their
   owner on the host;
4. the gateway's API key file (/pki/services/gateway/api-keys.yaml, digests
   only) and the host client's key in its directory (``api-key``);
5. with a scenario (EDGESPLIT_SCENARIO: a built-in name, or a file under the
   mounted /scenarios), the inventory takes its nodes' trust, memory and speed
   (its nodes map onto the compose nodes by id, else in order, entry first),
   the tiny model its ``model``, and /data/conditions.json its emulated
   conditions, which the ``conditions`` job applies once the nodes serve.

Settings (environment): EDGESPLIT_NODES (comma-separated ids; the first is the
entry), EDGESPLIT_CLIENTS, EDGESPLIT_NODE_MEMORY_FRACTION (each node's memory as
a fraction of what the model needs — weights and a full-context KV cache: below
1 forces a split, and at 0.6 any two nodes still hold it), EDGESPLIT_SCENARIO,
EDGESPLIT_TINY_*.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sys
from pathlib import Path
from typing import Any

from edgesplit.model.profile import profile_json
from edgesplit.model.shard import MANIFEST, shard_model
from edgesplit.model.tiny import write_tiny_model
from edgesplit.scenario.spec import BASE_FLOPS, Scenario, load_scenario
from edgesplit.security.pki import init_pki
from edgesplit.testbed import node_agreement_key

DATA, PKI, MODEL = Path("/data"), Path("/pki"), Path("/model")
OWNER = (int(os.environ.get("EDGESPLIT_UID", "10001")), int(os.environ.get("EDGESPLIT_GID", "10001")))
STATE = Path("/state")  # the node agents' state volumes, /state/<node id>
SCENARIOS = Path("/scenarios")  # EDGESPLIT_SCENARIO_DIR on the host
HOST_CLIENT = "host"  # /pki/clients/host is a directory on the host
HOST_ADMIN = "operator"  # /pki/admins/operator too: `edgesplit status` from the host
ADMINS = (HOST_ADMIN, "conditions")  # the conditions job sets emulated conditions
HOST_DIRS = (PKI / "clients" / HOST_CLIENT, PKI / "admins" / HOST_ADMIN)
API_KEYS = PKI / "services" / "gateway" / "api-keys.yaml"
CONDITIONS = DATA / "conditions.json"


def env_list(name: str, default: str) -> list[str]:
    return [v.strip() for v in os.environ.get(name, default).split(",") if v.strip()]


def tiny_model_settings(scenario: Scenario | None) -> dict[str, Any]:
    if scenario is not None and scenario.model:
        m = scenario.model
        return {"family": m.get("family", "qwen3"), "layers": int(m.get("layers", 12)),
                "hidden": int(m.get("hidden", 384)), "heads": int(m.get("heads", 6)),
                "kv_heads": int(m.get("kv_heads", 2)), "seed": int(m.get("seed", 0))}
    return {"family": os.environ.get("EDGESPLIT_TINY_FAMILY", "llama"),
            "layers": int(os.environ.get("EDGESPLIT_TINY_LAYERS", "8")),
            "hidden": int(os.environ.get("EDGESPLIT_TINY_HIDDEN", "256")),
            "heads": 4, "kv_heads": 2, "seed": 0}


def ensure_shards(scenario: Scenario | None = None) -> Path:
    shards = DATA / "shards"
    if (shards / MANIFEST).exists():
        print(f"init: shards present in {shards}")
        return shards
    source = MODEL
    if not (MODEL / "config.json").exists():
        source = DATA / "model"
        write_tiny_model(source, **tiny_model_settings(scenario))
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


def find_scenario(name: str) -> Scenario | None:
    if not name:
        return None
    mounted = [p for p in (SCENARIOS / name, SCENARIOS / f"{name}.yaml") if p.is_file()]
    return load_scenario(str(mounted[0]) if mounted else name)


def node_map(scenario: Scenario, nodes: list[str]) -> dict[str, str]:
    """Scenario node id -> compose node id: by id when they all match, else in
    order with the scenario's entry on the first compose node (the entry)."""
    ids = [n.id for n in scenario.nodes]
    if set(ids) <= set(nodes) and scenario.entry.id == nodes[0]:
        return {i: i for i in ids}
    if len(ids) > len(nodes):
        raise SystemExit(f"init: scenario {scenario.name!r} has {len(ids)} nodes, compose "
                         f"runs {len(nodes)} ({','.join(nodes)}): set EDGESPLIT_NODES and "
                         "the profiles that add nodes (deploy/compose.yaml)")
    ordered = [scenario.entry.id, *(i for i in ids if i != scenario.entry.id)]
    return dict(zip(ordered, nodes, strict=False))


def apply_scenario(inv: dict[str, Any], scenario: Scenario, nodes: list[str]
                   ) -> list[dict[str, Any]]:
    """Give the inventory the scenario's trust, memory and speed; return the
    emulated conditions per compose node (what SetConditions takes)."""
    names = node_map(scenario, nodes)
    specs = {names[n.id]: n for n in scenario.nodes}
    inv["nodes"] = [e for e in inv["nodes"] if e["id"] in specs]
    trusted = [names[n.id] for n in scenario.nodes if n.trusted]
    for entry in inv["nodes"]:
        spec = specs[entry["id"]]
        entry.update(trust=spec.trust, memory_bytes=int(spec.memory_gb * 2**30),
                     flops_per_s=BASE_FLOPS / spec.slowdown,
                     trusted_by=trusted if spec.trusted else [])
    inv["trusted_nodes"] = trusted
    conditions = []
    for spec in scenario.nodes:
        src = names[spec.id]
        links = {names[o.id]: scenario.link(spec.id, o.id) for o in scenario.nodes
                 if o.id != spec.id}
        conditions.append({"node": src, "address": f"{src}:50051", "conditions": {
            "compute_slowdown": spec.slowdown,
            "background_utilization": spec.background_utilization,
            "link_delay_s": {d: link.delay_ms / 1000 for d, link in links.items()},
            "link_bandwidth_bps": {d: link.bandwidth_mbps * 1e6 for d, link in links.items()}}})
    return conditions


def api_keys(clients: list[str]) -> None:
    """One key per client, made once: digests in the gateway's file, the host
    client's key itself in its own directory."""
    if API_KEYS.exists():
        return
    keys = {c: f"sk-edgesplit-{secrets.token_urlsafe(24)}" for c in clients}
    API_KEYS.write_text(json.dumps({"clients": [
        {"client": c, "key_sha256": hashlib.sha256(k.encode()).hexdigest()}
        for c, k in keys.items()]}, indent=1))
    os.chmod(API_KEYS, 0o600)
    host_key = PKI / "clients" / HOST_CLIENT / "api-key"
    if HOST_CLIENT in keys:
        host_key.write_text(keys[HOST_CLIENT] + "\n")
        os.chmod(host_key, 0o600)


def hand_over(root: Path, owner: tuple[int, int]) -> None:
    for path in [root, *root.rglob("*")]:
        os.chown(path, *owner)


def main() -> int:
    nodes = env_list("EDGESPLIT_NODES", "node-a,node-b,node-c")
    clients = env_list("EDGESPLIT_CLIENTS", f"client,{HOST_CLIENT}")
    scenario = find_scenario(os.environ.get("EDGESPLIT_SCENARIO", ""))
    shards = ensure_shards(scenario)
    profile = profile_json(str(shards))
    (DATA / "profile.json").write_text(json.dumps(profile, indent=1))
    fraction = float(os.environ.get("EDGESPLIT_NODE_MEMORY_FRACTION", "0.6"))
    config = json.loads((shards / "config.json").read_text())
    inv = inventory(nodes, profile, int(config.get("max_position_embeddings", 2048)), fraction)
    conditions = apply_scenario(inv, scenario, nodes) if scenario is not None else []
    CONDITIONS.write_text(json.dumps(conditions, indent=1))
    # Enrol each node's X25519 key: made here in the node's own state volume
    # (where its agent loads it), so the broadcaster signs for that key only.
    for entry in inv["nodes"]:
        state = STATE / entry["id"]
        if state.is_dir():
            entry["agreement_public_key"] = node_agreement_key(state, entry["id"])
            hand_over(state, OWNER)
    (DATA / "inventory.json").write_text(json.dumps(inv, indent=1))
    print(f"init: inventory of {[e['id'] for e in inv['nodes']]} (entry {nodes[0]}), "
          + (f"scenario {scenario.name!r}" if scenario else
             f"{inv['nodes'][0]['memory_bytes'] / 2**20:.1f} MiB each"))
    for comp in init_pki(PKI, nodes=nodes, clients=clients, admins=ADMINS):
        print(f"init: {comp.identity.uri} -> {comp.directory}")
    api_keys(clients)
    hand_over(DATA, OWNER)
    for d in [PKI / "ca", *(p for role in ("services", "nodes", "clients", "admins")
                            for p in (PKI / role).iterdir())]:
        host = d.stat()  # a host directory: its files go to whoever owns it there
        hand_over(d, (host.st_uid, host.st_gid) if d in HOST_DIRS and host.st_uid else OWNER)
    print("init: done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
