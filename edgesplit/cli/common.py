"""Options several sub-commands share: how to reach a service."""

from __future__ import annotations

import argparse
from typing import Any


def add_tls_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tls-ca", default="", help="PEM CA that signs the servers' certificates "
                                                "(enables TLS)")
    p.add_argument("--tls-cert", default="", help="PEM client certificate (mTLS)")
    p.add_argument("--tls-key", default="", help="PEM client key (mTLS)")


def transport(args: argparse.Namespace) -> Any:
    from edgesplit.rpc.transport import Transport, TransportSettings

    return Transport(TransportSettings(args.tls_ca, args.tls_cert, args.tls_key))
