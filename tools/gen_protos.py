"""Generate edgesplit/v1/*_pb2*.py(i) from protos/ with the pinned grpcio-tools.

Run as ``python tools/gen_protos.py [OUT_ROOT]``; OUT_ROOT defaults to the
repository root so imports read ``from edgesplit.v1 import node_agent_pb2``.
Generated files are committed; a test regenerates into a temporary folder
and fails when they differ. ``protos/google/`` holds googleapis files the
edgesplit protos import (google.rpc.Code): they are found on the include path
but not generated, since their Python code comes from the pinned
googleapis-common-protos.
"""

from __future__ import annotations

import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"


def generate(out_root: Path) -> list[Path]:
    protos = sorted(PROTO_ROOT.glob("edgesplit/v1/*.proto"))
    include = Path(protoc.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *[str(p.relative_to(PROTO_ROOT)) for p in protos],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    return sorted((out_root / "edgesplit" / "v1").glob("*_pb2*.py*"))


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT
    (out / "edgesplit" / "v1").mkdir(parents=True, exist_ok=True)
    for path in generate(out):
        print(path.relative_to(out))
