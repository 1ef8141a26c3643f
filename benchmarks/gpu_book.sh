#!/usr/bin/env bash
# The book's GPU measurements in one call on a GPU machine (about 10 minutes on an H100/H200):
#   0. the GPU tests of the two attribution methods and of the memory readings (they must agree, see below);
#   1. the profiling sweep of the 130M models (Fig. 2, Table 1): B=8, L = 64 … 16384, prefill and decode,
#      timers and torch.profiler, our Triton path;
#   2. the same at the largest published shapes (mamba2-2.7b, mamba-2.8b), L = 64 … 8192;
#   3. Table 2 / Fig. 5: Mamba2-130M pruned at r = 0.1 … 0.9 (states removed, and zeroed), B=8;
#   4. benchmarks/gpu_campaign.py, the kernel sections that fit in what is left.
# Each step has its own time limit and appends rows as it goes, so a step cut short keeps what it measured and
# a rerun resumes. Rows go to $PERFMAMBA_RESULTS/<device-slug>/ (default data/results/<device-slug>/).
#
#   bash benchmarks/gpu_book.sh                 # on the GPU machine, from the repository root
#   GPU_BOOK_SMOKE=1 TRITON_INTERPRET=1 bash benchmarks/gpu_book.sh   # tiny presets on CPU: checks the plumbing
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
if [ -n "${GPU_BOOK_SMOKE:-}" ]; then
  SMALL="mamba-tiny mamba2-tiny"; LARGE="mamba-tiny"; LENS="17"; LARGE_LENS="9"; DEV=cpu; DTYPE=float32
  EFF_MODEL=mamba2-tiny; EFF_LENS="[17]"; EFF_RATIOS="[0.5]"; WARM=0; ITERS=1; T1=120; T2=60; T3=120; CAMPAIGN=0
else
  SMALL="mamba2-130m mamba-130m"; LARGE="mamba2-2.7b mamba-2.8b"; LENS="64 512 1024 2048 4096 8192 16384"
  LARGE_LENS="64 512 2048 8192"; DEV=cuda; DTYPE=bfloat16
  EFF_MODEL=mamba2-130m; EFF_LENS="[1024, 8192]"; EFF_RATIOS="[0.1, 0.3, 0.5, 0.7, 0.9]"; WARM=3; ITERS=10
  T1=${T1:-160}; T2=${T2:-100}; T3=${T3:-110}; CAMPAIGN=${CAMPAIGN:-130}
fi
step() { echo "=== $1 ($(date -u +%H:%M:%S))"; }

if [ -z "${GPU_BOOK_SMOKE:-}" ]; then
  step "GPU checks of the attribution and memory measurement"
  timeout "${T0:-90}" "$PY" -m pytest -q -m gpu -p no:cacheprovider tests/test_profiling_attribution.py \
    tests/test_profiling_memory.py
  echo "exit $?"
fi

step "profile: $SMALL"
timeout "$T1" "$PY" -m perfmamba profile -m $SMALL --seqlens $LENS --batches 8 --phases prefill decode \
  --backend triton --method both --warmup $WARM --iters $ITERS --device $DEV --dtype $DTYPE --no-progress
echo "exit $?"

step "profile: $LARGE"
timeout "$T2" "$PY" -m perfmamba profile -m $LARGE --seqlens $LARGE_LENS --batches 8 --phases prefill decode \
  --backend triton --method both --warmup $WARM --iters $ITERS --device $DEV --dtype $DTYPE --no-progress
echo "exit $?"

step "pruning efficiency: $EFF_MODEL"
timeout "$T3" "$PY" - <<PYEOF
from perfmamba import experiments
df = experiments.pruning_efficiency(["$EFF_MODEL"], $EFF_RATIOS, batches=[8], seqlens=$EFF_LENS,
                                    modes=["removed", "zeroed"], paths=["triton"], methods=["timers"],
                                    warmup=$WARM, iters=$ITERS, dtype="$DTYPE", device="$DEV", progress=False)
print(len(df), "rows")
PYEOF
echo "exit $?"

if [ "$CAMPAIGN" -gt 0 ]; then
  step "kernel campaign"
  out_root=${PERFMAMBA_RESULTS:-data/results}
  timeout $((CAMPAIGN + 60)) "$PY" benchmarks/gpu_campaign.py --out "$out_root" --budget-s "$CAMPAIGN"
  echo "exit $?"
fi
step done
