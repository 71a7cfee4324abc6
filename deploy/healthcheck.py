"""Container health probe of the edgesplit image (compose healthchecks and
Kubernetes exec probes; docs/deployment.md, "Health checks").

    python /opt/edgesplit/share/healthcheck.py [HOST:PORT]      gRPC health, mTLS
    python /opt/edgesplit/share/healthcheck.py --http URL        HTTP 200 (the gateway)

The gRPC probe dials with the credentials the service itself was given in its
environment (EDGESPLIT_TLS_CA, EDGESPLIT_TLS_CERT, EDGESPLIT_TLS_KEY): servers
require a client certificate, so a probe without one (kubelet's own ``grpc``
probe) cannot connect. Without those variables it probes in plaintext, which
the transport allows on loopback only. Exit 0 when SERVING (HTTP: status 200),
1 otherwise, with one line saying why.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence

DEFAULT_TARGET = "127.0.0.1:50051"
TIMEOUT_S = 3.0


def probe_grpc(target: str, env: dict[str, str]) -> str | None:
    """None when ``target`` reports SERVING; else why not."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from edgesplit.rpc.transport import Transport, TransportSettings

    tls = [env.get(f"EDGESPLIT_TLS_{part}", "") for part in ("CA", "CERT", "KEY")]
    settings = TransportSettings(*tls) if any(tls) else TransportSettings(insecure=True)
    try:
        with Transport(settings).sync_channel(target, retry=()) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=TIMEOUT_S)
    except grpc.RpcError as exc:
        return f"{target}: {exc.code().name}: {exc.details()}"
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        return f"{target}: {health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}"
    return None


def probe_http(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:
            return None if resp.status == 200 else f"{url}: HTTP {resp.status}"
    except urllib.error.HTTPError as exc:
        return f"{url}: HTTP {exc.code}"
    except OSError as exc:
        return f"{url}: {exc}"


def main(argv: Sequence[str] | None = None, env: dict[str, str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--http"] and len(args) == 2:
        why = probe_http(args[1])
    elif len(args) <= 1 and not any(a.startswith("-") for a in args):
        why = probe_grpc(args[0] if args else DEFAULT_TARGET,
                         dict(os.environ if env is None else env))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    if why is not None:
        print(f"unhealthy: {why}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
