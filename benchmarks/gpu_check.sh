#!/usr/bin/env bash
# The GPU check of the training path (issue 22), one prepared run of under 10 minutes:
#   1. the CUDA tests (tests/test_training_fast.py: fp32 vs CPU accuracy, bf16 autocast and
#      channels_last within tolerance of fp32, no host synchronisation per step, train_many on
#      streams), which skip without CUDA;
#   2. benchmarks/bench_training.py --device cuda: the trainer vs its floor vs a DataLoader loop
#      per small model, K = 1, 5, 15 retrainings at once vs one after another, and --paper:
#      ResNet8 images/s on CIFAR-10-sized random data (fp32, bf16 + channels_last), one 40-epoch
#      retraining, Hooker et al.'s 9 x 5 x 5 retrainings projected.
# Usage:  bash benchmarks/gpu_check.sh [OUTDIR]     (PYTHON=... to pick the interpreter)
# Writes OUTDIR/gpu_check.log and OUTDIR/bench_cuda.json (OUTDIR default: $OUT or ./gpu_check).
set -uo pipefail
cd "$(dirname "$0")/.."
OUTDIR="${1:-${OUT:-gpu_check}}"
mkdir -p "$OUTDIR"
LOG="$OUTDIR/gpu_check.log"
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for cand in .venv/bin/python python3 python; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c "import torch" 2>/dev/null; then PY="$cand"; break; fi
  done
fi
[ -n "$PY" ] || { echo "no python with torch found; set PYTHON=" | tee "$LOG"; exit 2; }
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
{
  echo "== $(date -u +%FT%TZ) $(git rev-parse --short HEAD 2>/dev/null) python: $PY"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -2
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())"
} 2>&1 | tee "$LOG"
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 3)" || { echo "CUDA not available" | tee -a "$LOG"; exit 3; }

echo "== CUDA tests" | tee -a "$LOG"
timeout 180 "$PY" -m pytest tests/test_training_fast.py -q -p no:cacheprovider -rs -k "cuda" 2>&1 | tail -15 | tee -a "$LOG"
tests_rc=${PIPESTATUS[0]}

echo "== bench_training.py --device cuda --paper" | tee -a "$LOG"
timeout 400 "$PY" benchmarks/bench_training.py --device cuda --epochs 2 --many 1,5,15 --many-epochs 4 \
  --paper --paper-epochs 2 --json "$OUTDIR/bench_cuda.json" 2>&1 | tee -a "$LOG"
bench_rc=${PIPESTATUS[0]}
echo "== done: tests rc $tests_rc, bench rc $bench_rc" | tee -a "$LOG"
[ "$tests_rc" = 0 ] && [ "$bench_rc" = 0 ]
