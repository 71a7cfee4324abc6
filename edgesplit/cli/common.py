"""Options several sub-commands share: how to reach a service."""

from __future__ import annotations

import argparse
import os
from typing import Any


def add_tls_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tls-ca", default="", help="PEM CA that signs the servers' certificates "
                                                "(enables TLS)")
    p.add_argument("--tls-cert", default="", help="PEM client certificate (mTLS)")
    p.add_argument("--tls-key", default="", help="PEM client key (mTLS)")
    p.add_argument("--tls-dir", default=os.environ.get("EDGESPLIT_TLS_DIR", ""),
                   help="a component directory written by `edgesplit pki` (ca.pem, tls.pem, "
                        "tls.key): mTLS with it (default: $EDGESPLIT_TLS_DIR)")
    p.add_argument("--insecure", action="store_true",
                   help="plaintext without certificates (loopback only)")


def testbed_identity(testbed_dir: str, role: str) -> str:
    """The test bed's own ``client`` or ``admin`` certificate directory under
    ``testbed_dir`` ("" when that bed has none, e.g. it runs ``--insecure``)."""
    from edgesplit.bedpki import ADMIN, CLIENT, discovered

    return discovered(testbed_dir, CLIENT if role == "client" else ADMIN) if testbed_dir else ""


def transport(args: argparse.Namespace, default_dir: str = "") -> Any:
    """The client's transport: ``--insecure``, explicit files, ``--tls-dir``, or
    ``default_dir`` (a test bed's own client certificate) when it exists."""
    from pathlib import Path

    from edgesplit.rpc.transport import Transport, TransportSettings

    if args.insecure:
        return Transport(TransportSettings(insecure=True))
    if args.tls_ca or args.tls_cert or args.tls_key:
        return Transport(TransportSettings(args.tls_ca, args.tls_cert, args.tls_key))
    tls_dir = Path(args.tls_dir or default_dir)
    if (args.tls_dir or default_dir) and (tls_dir / "tls.pem").exists():
        return Transport(TransportSettings(str(tls_dir / "ca.pem"), str(tls_dir / "tls.pem"),
                                           str(tls_dir / "tls.key")))
    # No certificate anywhere: plaintext, which the transport allows on loopback only.
    return Transport(TransportSettings(insecure=True))
