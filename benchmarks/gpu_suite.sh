#!/usr/bin/env bash
# The GPU suite (issue 16), under 8 minutes on one H100/H200:
#   1. training tokens/s at batch 64 and 256, ours (float32 and bfloat16) against torch's
#      cuDNN nn.LSTM (float32 and bfloat16 autocast): benchmarks/train_bench.py;
#   2. 30,000 tunes sampled in one batch: benchmarks/sample_bench.py;
#   3. the wall time of the 100-epoch v2 recipe, extrapolated from 3 measured epochs of
#      experiments.train (epochs 2-3, after most batch shapes are compiled).
#
#   bash benchmarks/gpu_suite.sh [RESULTS_FILE]      (default: gpu_suite_results.md)
#   SMOKE=1 bash benchmarks/gpu_suite.sh             tiny sizes on the CPU: proves every command
#
# Installs from requirements.txt, benchmarks/requirements.txt and (GPU) requirements-gpu.txt;
# every step has a time limit; any failure stops the suite with "gpu_suite: FAILED: <step>".
set -euo pipefail
cd "$(dirname "$0")/.."
RESULTS=${1:-gpu_suite_results.md}
SMOKE=${SMOKE:-0}
PY=${PYTHON:-python}
export PYTHONPATH=.
WORK=$(mktemp -d)
# Step time limits are for the GPU; a smoke run on a shared CPU gets LIMIT_SCALE times more.
LIMIT_SCALE=${LIMIT_SCALE:-$([ "$SMOKE" = 1 ] && echo 6 || echo 1)}

fail() { echo "gpu_suite: FAILED: $*" >&2; echo "FAILED: $*" >> "$RESULTS"; exit 1; }
run() {  # run LIMIT_SECONDS NAME CMD...: the output goes to the terminal and to RESULTS
  local limit=$(($1 * LIMIT_SCALE)) name=$2; shift 2
  echo "== $name" | tee -a "$RESULTS"
  local start=$SECONDS
  { timeout "$limit" "$@" 2>&1 | grep -v -e '^WARNING' -e 'Warning' | tee -a "$RESULTS"; } \
    || fail "$name (exit ${PIPESTATUS[0]}, limit ${limit}s)"
  echo "($name: $((SECONDS - start)) s)" | tee -a "$RESULTS"
}

echo "# gpu_suite $(date -u +%FT%TZ) SMOKE=$SMOKE" > "$RESULTS"
$PY -m pip install -q -r requirements.txt >/dev/null || fail "pip install -r requirements.txt"
if [ "$SMOKE" = 1 ]; then
  $PY -c "import torch" 2>/dev/null || $PY -m pip install -q -r benchmarks/requirements.txt \
    --index-url https://download.pytorch.org/whl/cpu >/dev/null || fail "pip install -r benchmarks/requirements.txt"
else
  $PY -m pip install -q -r benchmarks/requirements.txt -r benchmarks/requirements-gpu.txt >/dev/null \
    || fail "pip install -r benchmarks/requirements.txt -r benchmarks/requirements-gpu.txt"
  $PY -c "import jax; assert jax.default_backend() == 'gpu', jax.devices()" || fail "JAX sees no GPU"
  $PY -c "import torch; assert torch.cuda.is_available()" || fail "torch sees no CUDA device"
fi
run 60 "versions" $PY -c "import jax, torch, platform; print('python', platform.python_version(), 'jax', jax.__version__, jax.devices(), 'torch', torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')"

if [ "$SMOKE" = 1 ]; then
  TRAIN="--hidden_size=32 --seq_len=20 --rounds=1 --steps=1 --numerics_steps=1 --torch_device=cpu"
  B1=8 B2=16 TUNES=64 TOKENS=16
  V2="--config.hidden_size=32 --config.batch_size=4 --config.data_path=tests/fixtures/data_v2_excerpt.txt"
else
  TRAIN="--hidden_size=512 --seq_len=160 --rounds=3 --steps=10 --numerics_steps=2 --torch_device=cuda"
  B1=64 B2=256 TUNES=30000 TOKENS=256
  V2=""
fi
run 150 "train_bench batch $B1" $PY -m benchmarks.train_bench $TRAIN --batch_size=$B1 --bf16
run 150 "train_bench batch $B2" $PY -m benchmarks.train_bench $TRAIN --batch_size=$B2 --bf16
run 90 "sample_bench $TUNES tunes" $PY -m benchmarks.sample_bench --batches=$TUNES --steps=$TOKENS --rounds=1 --others=false --pause=0
run 150 "v2 recipe, 3 epochs" bash -c "$PY -m experiments.train --config=experiments/configs/v2.py $V2 \
  --config.num_epochs=3 --config.checkpoint_every_steps=100000 --workdir=$WORK/v2 2>&1 | tee $WORK/v2.log"
run 30 "v2 100 epochs extrapolated" $PY - "$WORK/v2.log" <<'PYEOF'
import re, sys
from datetime import datetime

# absl log lines carry the clock: the first line, and the end of epochs 1 and 3.
stamps, first = {}, None
for line in open(sys.argv[1]):
    m = re.match(r"I\d{4} (\d\d:\d\d:\d\d\.\d+) ", line)
    if not m:
        continue
    t = datetime.strptime(m.group(1), "%H:%M:%S.%f")
    first = first or t
    e = re.search(r" epoch (\d+)\.00 ", line)
    if e:
        stamps.setdefault(int(e.group(1)), t)
if 1 not in stamps or 3 not in stamps:
    sys.exit(f"epochs 1 and 3 not found in the log (found {sorted(stamps)})")
to_first = (stamps[1] - first).total_seconds()
per_epoch = (stamps[3] - stamps[1]).total_seconds() / 2
print(f"start to end of epoch 1 (compilation included): {to_first:.1f} s; epochs 2-3: {per_epoch:.1f} s per epoch "
      f"(validation included); 100 epochs extrapolated: {(to_first + 99 * per_epoch) / 60:.1f} min")
PYEOF
echo "gpu_suite: done, figures in $RESULTS"
