"""API keys -> client identities, and each client's concurrent-request quota.

The key file (YAML or JSON; a Kubernetes Secret mounted as a file works)::

    clients:
      - client: alice            # identity: logs, metrics, quotas
        key: sk-alice-...        # or key_sha256: <hex digest of the key>
        max_concurrent: 4        # optional; default: the gateway's max_concurrent
        entries: [node-0]        # optional; entry nodes this client may use (default: any)
        trusted_only: true       # optional; only entries the inventory marks trusted

Keys are compared as SHA-256 digests in constant time, so the file may hold
digests only and a timing probe learns nothing about a key.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from services.gateway.errors import APIError


@dataclass(frozen=True, slots=True)
class Client:
    """Who is calling, and what they may use."""

    name: str
    max_concurrent: int
    entries: frozenset[str] = frozenset()  # empty: any entry
    trusted_only: bool = False

    def may_use(self, node_id: str, trusted: bool = True) -> bool:
        return (not self.entries or node_id in self.entries) and (trusted or not self.trusted_only)


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class KeyBook:
    """The clients of one key file (or one anonymous client when there is none)."""

    def __init__(self, clients: dict[bytes, Client], anonymous: Client | None) -> None:
        self._clients = clients
        self._anonymous = anonymous
        self._in_flight: dict[str, int] = {}

    @classmethod
    def load(cls, path: str, default_max_concurrent: int) -> KeyBook:
        if not path:
            return cls({}, Client("anonymous", default_max_concurrent))
        raw: Any = yaml.safe_load(Path(path).read_text()) or {}
        entries = raw.get("clients", []) if isinstance(raw, dict) else raw
        if not isinstance(entries, list):
            raise TypeError(f"{path}: expected a list under 'clients'")
        clients: dict[bytes, Client] = {}
        for i, e in enumerate(entries):
            if not isinstance(e, dict) or not e.get("client"):
                raise ValueError(f"{path}: entry {i} needs a 'client' name")
            if "key_sha256" in e:
                digest = bytes.fromhex(str(e["key_sha256"]))
            elif e.get("key"):
                digest = _digest(str(e["key"]))
            else:
                raise ValueError(f"{path}: client {e['client']!r} needs 'key' or 'key_sha256'")
            clients[digest] = Client(str(e["client"]),
                                     int(e.get("max_concurrent", default_max_concurrent)),
                                     frozenset(str(n) for n in e.get("entries", ()) or ()),
                                     bool(e.get("trusted_only", False)))
        return cls(clients, None)

    def authenticate(self, authorization: str | None) -> Client:
        """The client a ``Authorization: Bearer KEY`` header names; 401 otherwise."""
        if self._anonymous is not None:
            return self._anonymous
        scheme, _, key = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise APIError(401, "missing API key: send 'Authorization: Bearer KEY'",
                           "authentication_error", "missing_api_key")
        digest = _digest(key.strip())
        found = None
        for known, client in self._clients.items():  # constant time per candidate
            if hmac.compare_digest(known, digest):
                found = client
        if found is None:
            raise APIError(401, "invalid API key", "authentication_error", "invalid_api_key")
        return found

    def acquire(self, client: Client, retry_after_s: int) -> None:
        """Take one of the client's concurrent-request slots; 429 when none is free.
        (The event loop is single-threaded, so a plain counter is exact.) Every
        acquire is paired with one :meth:`release`, also for streams that end early."""
        used = self._in_flight.get(client.name, 0)
        if used >= client.max_concurrent:
            raise APIError(429, f"client {client.name!r} has {used} requests in flight "
                           f"(quota {client.max_concurrent})", "rate_limit_error",
                           "quota_exceeded", headers={"Retry-After": str(retry_after_s)})
        self._in_flight[client.name] = used + 1

    def release(self, client: Client) -> None:
        self._in_flight[client.name] -= 1

    def in_flight(self, client: str) -> int:
        return self._in_flight.get(client, 0)
