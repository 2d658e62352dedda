#!/usr/bin/env bash
# One call on a borrowed GPU, at the paper's settings (batch 8), in order of what it tells:
#   bench_b8.md           the bench table: the Trainer and our steps, one process
#   bench_b8_x6.md        six three-task SMART runs side by side on the one GPU, and twelve
#   bench_b8_x12.md       (a batch-8 step leaves the GPU idle between kernel launches)
#   epoch.json/.log       one paper-scale simultaneous SMART epoch (bench/epoch.py)
#   bench_b8_compiled.md  the experiment not yet measured there: torch.compile's default mode
#   fused_rate.md         SMART runs fused into one vmapped model, M = 1, 2, 4, ... (bench/fused_rate.py)
# Each step gets what is left of DEADLINE seconds (default 540), so a slow step costs the last ones.
#
# The GPU machine has PyTorch, transformers and pandas but no network, so it needs beside the
# repository (in folders that .git/info/exclude ignores and the device call carries):
#   .device/model  the bundled model folder (weights stored in float16, loaded in float32:
#                  the fp32 file alone is over the 64 MiB a call may carry)
#   .device/raw    a copy of the CS224N data folder
#   .whl           wheels for what the image lacks (pydantic and its three dependencies)
# Usage: bash bench/device_check.sh [CHECK...]   CHECKs among bench, epoch, compiled, fused, grid
# (default: all, in that order). It writes to $OUT, or bench/out/device; PYTHON, STEPS and DEADLINE override
# the interpreter, the bench's timed steps and the time box.
set -uo pipefail
checks=" ${*:-bench epoch compiled fused grid} "
wanted() { [[ $checks == *" $1 "* ]]; }
out=${OUT:-bench/out/device}
python=${PYTHON:-python3}
deadline=$(( $(date +%s) + ${DEADLINE:-540} ))
left() { echo $(( deadline - $(date +%s) )); }
within() {  # within SECONDS COMMAND...: run it for at most SECONDS and what is left, or skip it
  local limit=$(( $1 < $(left) ? $1 : $(left) )); shift
  if (( limit < 10 )); then echo "skipped (time box spent): $*"; return 0; fi
  timeout "$limit" "$@"
}
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
from smartmtl.data.prepare import prepare
raw = presets.render("paper")
raw["model"]["backbone"], raw["data"]["raw_dir"], raw["data"]["prepared_dir"] = ".device/model", ".device/raw", "/tmp/prepared"
yaml.safe_dump(raw, open(f"{sys.argv[1]}/paper.yaml", "w"), sort_keys=False)
prepare(".device/raw", "/tmp/prepared", parse_params(raw).data.train_limit, 0)
EOF
echo "prepared; $(left) s left"

bench() {  # bench FILE ARGS...: the bench table at batch 8 into $out/FILE
  local file=$1; shift
  within 100000 "$python" bench/train_step.py --params "$out/paper.yaml" --batch-size 8 --steps "${STEPS:-30}" "$@" \
    2>&1 | grep -v -i -e warn -e "loading weights" | tee "$out/$file"
  echo "$file done; $(left) s left"
}
if wanted bench; then
  bench bench_b8.md
  bench bench_b8_x6.md --phases smart_3task --processes 6
  bench bench_b8_x12.md --phases smart_3task --processes 12
fi
if wanted epoch; then
  within 360 "$python" bench/epoch.py --params "$out/paper.yaml" 2>"$out/epoch.log" | tee "$out/epoch.json"
fi
if wanted compiled; then
  bench bench_b8_compiled.md --phases plain,smart_3task --compile default
fi
# Fused groups (issue 26; `bash bench/device_check.sh fused` when the call's time is short):
#   fused_rate.md        M SMART runs as one model against runs one after another, the paper
#                        preset's GPU-hours at the best rate, and one group step's profile
#   fused_rate_plain.md  the same for plain runs (Concat*)
#   fused_x4.md          four groups of 16 side by side, each its own process: fusion and processes
# and the paper preset's groups (`grid`):
#   fused_grid.md        Table 3's runs (the grid's cells x seeds, each cell its dropout and
#                        lambda_s) fused: 10 (one seed), 30 (the paper's grid), 64
#   fused_grid_x2.md     the grid's 30 runs as two groups of 15 side by side
#   plain_x6.md          six plain runs side by side (the runs a group does not take)
#   epoch_group.json     the grid's group in the real loop over a paper-scale epoch, as far as
#                        the time box lets it (bench/epoch.py --group table3)
# `bash bench/device_check.sh fused grid` took 7.5 min on an H200 (2026-11-30, in three calls).
fused() {  # fused SECONDS FILE ARGS...: bench/fused_rate.py at batch 8 into $out/FILE
  local seconds=$(( $1 < $(left) ? $1 : $(left) )) file=$2; shift 2
  within "$seconds" "$python" bench/fused_rate.py --params "$out/paper.yaml" --batch-size 8 --steps "${STEPS:-20}" \
    --deadline $(( seconds - 30 )) "$@" 2>&1 | grep -v -i -e warn -e "loading weights" | tee "$out/$file"
  echo "$file done; $(left) s left"
}
if wanted fused; then
  fused 200 fused_rate.md --members 1,4,8,16,32,64 --profile 16
  fused 70 fused_rate_plain.md --row concat_star --members 1,8,32
  for copy in 1 2 3 4; do
    fused 110 "fused_x4_$copy.md" --members 16 --separate 0 >/dev/null &
  done
  wait
  cat "$out"/fused_x4_*.md > "$out/fused_x4.md" && rm "$out"/fused_x4_*.md
fi
if wanted grid; then
  fused 170 fused_grid.md --grid --members 10,30,64
  for copy in 1 2; do
    fused 90 "fused_grid_x2_$copy.md" --grid --members 15 --separate 0 >/dev/null &
  done
  wait
  cat "$out"/fused_grid_x2_*.md > "$out/fused_grid_x2.md" && rm "$out"/fused_grid_x2_*.md
  within 90 "$python" bench/train_step.py --params "$out/paper.yaml" --batch-size 8 --steps "${STEPS:-20}" \
    --phases plain,plain_3task --processes 6 2>&1 | grep -v -i warn | tee "$out/plain_x6.md"
  epoch_s=$(( $(left) < 150 ? $(left) : 150 ))
  within "$epoch_s" "$python" bench/epoch.py --params "$out/paper.yaml" --group table3 --seconds $(( epoch_s - 45 )) \
    2>"$out/epoch_group.log" | tee "$out/epoch_group.json"
fi
echo "all done; $(left) s left"
