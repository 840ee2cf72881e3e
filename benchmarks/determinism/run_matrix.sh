#!/usr/bin/env bash
# The bisect matrix of issue 34: one probe configuration at a time, each bounded in time, all appended to
# benchmarks/determinism/results.jsonl. Run from the repository root with PYTHONPATH=$PWD.
# Usage: benchmarks/determinism/run_matrix.sh [seconds per configuration, default 120]
set -u
per=${1:-120}
py=${PYTHON:-python}
out=benchmarks/determinism/results.jsonl
probe() {  # label, then probe arguments
  local label=$1; shift
  timeout $((per + 240)) nice -n 5 "$py" benchmarks/determinism/probe.py --pairs 100000 --k 16 --seconds "$per" \
    --out "$out" --label "$label" "$@" 2>/dev/null | grep -E '"summary"|"equal": false'
}
probe default-bf16
probe default-fp32 --precision fp32
probe bf16-steps-per-call-1 --steps-per-call 1
probe bf16-8-per-call-vs-1 --b-steps-per-call 1
probe bf16-op-determinism --op-determinism
probe bf16-intra-1 --intra-threads 1
probe bf16-intra-2 --intra-threads 2
probe bf16-no-fast-ops --no-fast-ops
for part in filter_gradients few_channels batchnorm dropout leaky_relu fused_updates shared_backward; do
  probe "bf16-off-$part" --off "$part"
done
