#!/usr/bin/env bash
# Every GPU figure in docs/gpu.md, in one run that fits a short loan (about 4 minutes on
# one H100; benchmarks/gpu_all.py says how that was estimated):
#   bash benchmarks/gpu_all.sh OUT_FOLDER              # needs CUDA
#   bash benchmarks/gpu_all.sh --rehearse OUT_FOLDER   # the same steps on the CPU, tiny sizes
# Writes OUT_FOLDER/gpu_all.md (one table) and gpu_all.json as it goes; stops at the first
# failure with a non-zero status.
set -euo pipefail
cd "$(dirname "$0")/.."
rehearse=()
if [ "${1:-}" = "--rehearse" ]; then rehearse=(--rehearse); shift; fi
out=${1:?usage: bash benchmarks/gpu_all.sh [--rehearse] OUT_FOLDER}
export PYTHONUNBUFFERED=1
mkdir -p "$out"
python3 benchmarks/gpu_all.py "${rehearse[@]}" "$out" 2>&1 | tee "$out/gpu_all.log"
