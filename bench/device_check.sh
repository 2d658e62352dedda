#!/usr/bin/env bash
# One call on a borrowed GPU: the bench table at the paper's batch size 8 and settings, whose
# smart_3task row gives one paper-scale simultaneous SMART epoch; then, if given, a
# bench/sweep_cell.py comparison of Table 3's cell under some overrides (arguments as for it).
#
# The GPU machine has PyTorch, transformers and pandas but no network, so it needs beside the
# repository (in folders that .git/info/exclude ignores and the device call carries):
#   .device/model  the bundled model folder (weights stored in float16, loaded in float32:
#                  the fp32 file alone is over the 64 MiB a call may carry)
#   .device/raw    a copy of the CS224N data folder
#   .whl           wheels for what the image lacks (pydantic and its three dependencies)
# Usage: bash bench/device_check.sh [RUN ...]   (writes to $OUT, or bench/out/device;
# PYTHON and STEPS override the interpreter and the bench's timed steps, to try it on a CPU)
set -euo pipefail
out=${OUT:-bench/out/device}
python=${PYTHON:-python3}
mkdir -p "$out"
if ! "$python" -c "import pydantic" 2>/dev/null; then
  "$python" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
fi
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | tee "$out/gpu.txt" || true

"$python" - "$out" <<'EOF'
import sys, yaml
from smartmtl import presets
from smartmtl.config import parse_params
from smartmtl.data import prepare
raw = presets.render("paper")
raw["model"]["backbone"], raw["data"]["raw_dir"], raw["data"]["prepared_dir"] = ".device/model", ".device/raw", "/tmp/prepared"
yaml.safe_dump(raw, open(f"{sys.argv[1]}/paper.yaml", "w"), sort_keys=False)
prepare(".device/raw", "/tmp/prepared", parse_params(raw).data.train_limit, 0)
EOF
"$python" bench/train_step.py --params "$out/paper.yaml" --batch-size 8 --steps "${STEPS:-50}" 2>&1 | grep -v -i warn \
    | tee "$out/bench_b8.md"

if [ "$#" -gt 0 ]; then
  "$python" bench/sweep_cell.py --preset laptop --raw-dir .device/raw --out "$out/sweep" \
      --base "model.backbone=.device/model" "$@" 2>&1 | grep -v -i -E "warn|Loading weights" | tee "$out/sweep.log"
fi
