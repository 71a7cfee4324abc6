"""Who a certificate names: a role and a name within it (no grpc, no x509).

Certificates carry it as the URI subject alternative name
``spiffe://edgesplit/<role>/<name>``: ``edgesplit pki`` writes it
(security/pki.py) and the authorisation table reads it (rpc/authz.py).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

SPIFFE_PREFIX = "spiffe://edgesplit/"


class Role(enum.StrEnum):
    NODE = "node"  # a node agent
    ORCHESTRATOR = "orchestrator"
    BROADCASTER = "broadcaster"
    MONITOR = "monitor"
    SPLIT_REVISER = "split-reviser"
    GATEWAY = "gateway"  # the HTTP front door, calls Generate for its clients
    CLIENT = "client"  # an application calling Generate
    ADMIN = "admin"  # an operator: status, history, test-bed conditions


@dataclass(frozen=True, slots=True)
class Identity:
    role: Role
    name: str

    @property
    def uri(self) -> str:
        return f"{SPIFFE_PREFIX}{Role(self.role).value}/{self.name}"

    @classmethod
    def parse(cls, uri: str) -> Identity | None:
        """``spiffe://edgesplit/<role>/<name>`` -> Identity; anything else None."""
        if not uri.startswith(SPIFFE_PREFIX):
            return None
        role, _, name = uri[len(SPIFFE_PREFIX):].partition("/")
        if not name or "/" in name:
            return None
        try:
            return cls(Role(role), name)
        except ValueError:
            return None
