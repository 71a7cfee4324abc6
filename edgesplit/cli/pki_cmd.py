"""``edgesplit pki init|add-node|add-client``: a deployment's CA, certificates and signing key."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("pki", help="create the CA, per-component certificates and the "
                                   "control signing key, one directory per component")
    psub = p.add_subparsers(dest="pki_command", required=True)

    i = psub.add_parser("init", help="create (or complete) DIR: CA, services, nodes, clients")
    i.add_argument("dir", help="the PKI directory (created if absent)")
    i.add_argument("--node", action="append", default=[], metavar="ID",
                   help="a node agent (repeatable)")
    i.add_argument("--client", action="append", default=[], metavar="NAME",
                   help="a client identity (repeatable)")
    i.add_argument("--admin", action="append", default=[], metavar="NAME",
                   help="an operator identity: status, history, test-bed admin (repeatable)")
    i.add_argument("--service", action="append", default=None, metavar="NAME",
                   help="the services (repeatable; default: all edgesplit services)")
    i.add_argument("--domain", action="append", default=[], metavar="SUFFIX",
                   help="also name each service and node NAME.SUFFIX (repeatable)")
    i.set_defaults(handler=_init)

    for role in ("node", "client", "admin"):
        a = psub.add_parser(f"add-{role}", help=f"issue one more {role} under DIR's CA")
        a.add_argument("dir", help="a PKI directory made by `pki init`")
        a.add_argument("name", metavar="ID" if role == "node" else "NAME",
                       help=f"the {role}'s id: its directory, DNS and URI name")
        if role == "node":
            a.add_argument("--host", action="append", default=[],
                           help="another DNS name or IP the node is reached at (repeatable)")
        a.add_argument("--replace", action="store_true",
                       help="reissue an existing one (key rotation)")
        a.set_defaults(handler=_add, role=role)


def _init(args: argparse.Namespace) -> int:
    from edgesplit.security.errors import KeyMaterialError
    from edgesplit.security.pki import DEFAULT_SERVICES, control_key_id, init_pki

    try:
        written = init_pki(args.dir, nodes=args.node, clients=args.client, admins=args.admin,
                           services=args.service or DEFAULT_SERVICES, domains=args.domain)
    except (KeyMaterialError, ValueError, OSError) as exc:
        raise SystemExit(f"edgesplit pki init: {exc}") from None
    for comp in written:
        print(f"{comp.identity.uri}  ->  {comp.directory}")
    print(f"{len(written)} component(s) written; control key {control_key_id(args.dir)}")
    return 0


def _add(args: argparse.Namespace) -> int:
    from edgesplit.security.errors import KeyMaterialError
    from edgesplit.security.pki import Identity, add_component

    try:
        comp = add_component(args.dir, Identity(args.role, args.name),
                             hosts=getattr(args, "host", []), replace=args.replace)
    except (KeyMaterialError, ValueError, OSError) as exc:
        raise SystemExit(f"edgesplit pki add-{args.role}: {exc}") from None
    print(f"{comp.identity.uri}  ->  {comp.directory}")
    return 0
