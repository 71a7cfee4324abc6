"""The local test bed's identities: ``edgesplit pki`` material under its state
directory, issued on demand, one certificate per component.

Every service the bed, the scenarios, the benchmarks or the tests start gets its
own directory (``--tls-ca/--tls-cert/--tls-key``), and the bed's own calls
present the identity the authorisation table (``edgesplit.rpc.authz.POLICY``)
expects for them: :data:`ADMIN` for test-bed admin and status calls,
:data:`CLIENT` for ``Generate``, the broadcaster's certificate for its static
rollout (Prepare/Commit), the orchestrator's for an ``Apply``
(docs/architecture.md §12).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgesplit.rpc.transport import LOOPBACK_PLAINTEXT, Transport, TransportSettings
from edgesplit.security.identity import Identity, Role
from edgesplit.security.pki import Component, init_pki

PKI_DIR = "pki"  # under a test bed's (or a run's) state directory
ADMIN = Identity(Role.ADMIN, "testbed")  # the operator: TestbedAdmin, GetInfo, Status, History
CLIENT = Identity(Role.CLIENT, "testbed")  # an application calling Generate

# `python -m services.NAME` -> the role its certificate names (a node agent's
# name is its --node-id).
SERVICE_ROLES: dict[str, Role] = {
    "monitor": Role.MONITOR,
    "split_reviser": Role.SPLIT_REVISER,
    "broadcaster": Role.BROADCASTER,
    "orchestrator": Role.ORCHESTRATOR,
    "gateway": Role.GATEWAY,
    "node_agent": Role.NODE,
}


# Where `edgesplit pki` puts each role's directories (every service: "services").
_KINDS = {Role.NODE: "nodes", Role.CLIENT: "clients", Role.ADMIN: "admins"}


def service(role: Role) -> Identity:
    """A control-plane service's identity (its name is its kind, as `pki init` writes it)."""
    return Identity(role, role.value)


@dataclass
class LocalPki:
    """A CA and per-component certificates under ``root``, made as they are asked for."""

    root: Path
    _transports: dict[Identity, Transport] = field(default_factory=dict, repr=False)

    def directory(self, identity: Identity) -> Path:
        """Where ``identity``'s material lies (``ca.pem``, ``tls.pem``, ``tls.key``)."""
        return self.root / _KINDS.get(identity.role, "services") / identity.name

    def component(self, identity: Identity) -> Component:
        """The component's directory, issuing its certificate first if it has none
        (``init_pki`` is idempotent: the CA and signing key are made once)."""
        kind = _KINDS.get(identity.role)
        init_pki(self.root, **({kind: [identity.name]} if kind else {}))
        return Component(identity, self.directory(identity))

    def args(self, identity: Identity) -> list[str]:
        """The command-line flags that give a service its own certificate."""
        c = self.component(identity)
        return ["--tls-ca", str(c.ca), "--tls-cert", str(c.cert), "--tls-key", str(c.key)]

    def settings(self, identity: Identity) -> TransportSettings:
        c = self.component(identity)
        return TransportSettings(str(c.ca), str(c.cert), str(c.key))

    def transport(self, identity: Identity) -> Transport:
        """A channel factory presenting ``identity``'s certificate (one per identity)."""
        if identity not in self._transports:
            self._transports[identity] = Transport(self.settings(identity))
        return self._transports[identity]


def discovered(state_dir: str | Path, identity: Identity) -> str:
    """``identity``'s directory for a test bed's state directory, "" if it has none
    (an insecure bed, or no bed there): what ``edgesplit generate``/``status`` use.
    The bed's ``testbed.json`` names its PKI; without one, ``state_dir/pki``."""
    import json

    bed = Path(state_dir) / "testbed.json"
    root = Path(state_dir) / PKI_DIR
    if bed.exists():
        named = json.loads(bed.read_text()).get("pki", "")
        if not named:
            return ""  # an insecure bed
        root = Path(named)
    d = LocalPki(root).directory(identity)
    return str(d) if (d / "tls.pem").exists() else ""


def transport_for(pki: LocalPki | None, identity: Identity) -> Transport:
    """``identity``'s transport, or loopback plaintext for an explicitly insecure bed."""
    return pki.transport(identity) if pki is not None else PLAINTEXT


PLAINTEXT = Transport(LOOPBACK_PLAINTEXT)
