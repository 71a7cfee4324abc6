"""The compose stack's emulated conditions (deploy/compose.yaml, service ``conditions``).

Once the node agents serve, it sets each node's emulated compute slow-down,
background load and per-destination link delay and bandwidth, as the init job
wrote them from the scenario (EDGESPLIT_SCENARIO) into /data/conditions.json,
through each agent's TestbedAdmin (served with ``--testbed-admin``, callable by
admins only: this job has the ``conditions`` admin certificate). No scenario:
nothing to set. The scenario's timed events are the scenario runner's, not this
job's (docs/deployment.md, "Emulated conditions").
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import grpc

from edgesplit.rpc.transport import Transport, TransportSettings
from edgesplit.v1 import testbed_admin_pb2 as ta
from edgesplit.v1 import testbed_admin_pb2_grpc as ta_grpc

CONDITIONS = Path("/data/conditions.json")
PKI = Path("/etc/edgesplit/pki")
TIMEOUT_S = 10.0
WAIT_S = 180.0  # a node of a profile the job does not wait for may still be starting


def set_conditions(transport: Transport, address: str, conditions: dict[str, Any],
                   wait_s: float = WAIT_S) -> ta.Conditions:
    """Replace one node's conditions (idempotent), retrying while it is not up yet."""
    req = ta.SetConditionsRequest(conditions=ta.Conditions(**conditions), replace=True)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            with transport.sync_channel(address, retry=()) as channel:
                reply = ta_grpc.TestbedAdminStub(channel).SetConditions(req, timeout=TIMEOUT_S)
                conditions: ta.Conditions = reply.conditions
                return conditions
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def apply(entries: list[dict[str, Any]], transport: Transport, wait_s: float = WAIT_S) -> None:
    for e in entries:
        got = set_conditions(transport, e["address"], e["conditions"], wait_s)
        links = ", ".join(f"{d} {got.link_delay_s[d] * 1000:g} ms "
                          f"{got.link_bandwidth_bps.get(d, 0) / 1e6:g} Mbit/s"
                          for d in sorted(got.link_delay_s))
        print(f"conditions: {e['node']}: slowdown {got.compute_slowdown:g}, "
              f"background {got.background_utilization:g}; {links}")


def main() -> int:
    entries = json.loads(CONDITIONS.read_text()) if CONDITIONS.exists() else []
    if not entries:
        print("conditions: no scenario, nothing to set")
        return 0
    apply(entries, Transport(TransportSettings(
        str(PKI / "ca.pem"), str(PKI / "tls.pem"), str(PKI / "tls.key"))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
