#!/usr/bin/env bash
# One short GPU check (run on a CUDA machine from the repo root): split vs
# monolithic equivalence on CUDA, then the pipeline benchmark on CUDA.
# Wheels for packages the machine lacks are expected in .whl/ (see README).
set -uo pipefail
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, transformers, grpc; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'transformers', transformers.__version__, 'grpc', grpc.__version__)" | tee -a "$OUT/gpu.txt"
EDGESPLIT_TEST_DEVICE=cuda timeout 240 python3 -m pytest -q -p no:cacheprovider \
  tests/service/test_split_equivalence.py tests/service/test_node_agent.py 2>&1 | tail -15 | tee "$OUT/equivalence.txt"
timeout 300 python3 -m edgesplit.cli bench pipeline --json --device cuda --repeats 3 \
  --dir /tmp/bench > "$OUT/pipeline-cuda.json" 2> "$OUT/pipeline-cuda.log"
echo "bench rc=$?"; cat "$OUT/pipeline-cuda.json"; tail -5 "$OUT/pipeline-cuda.log"
