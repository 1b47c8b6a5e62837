#!/usr/bin/env bash
# The prepared GPU calibration: one device call (the `device` tool's run), well inside 8 minutes.
#   run: bash calibrate/gpu.sh [NAME]     (on the lent machine; writes $OUT/NAME.json and $OUT/calibrate.log)
# Then copy NAME.json into moesim/config/catalog/profiles/ and commit it: its provenance holds the device name,
# driver, torch/CUDA versions, date, grid and repetitions. Check the same code first on a CPU with
#   python -m moesim.calibrate.run --device cuda --dry-run --grid gpu-smoke
# One GPU cannot measure NCCL all-to-all (NCCL refuses two ranks on one GPU): the profile says so and keeps
# the catalogue's link figures.
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:-gpu-measured}
out=${OUT:-/tmp}
python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device visible')"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/nvidia-smi.txt"
# calibrate/ needs torch and numpy (and pyyaml for the catalogue), all on the device image; not moesim's
# simulator dependencies
PYTHONUNBUFFERED=1 timeout 450 python3 -m moesim.calibrate.run --device cuda --grid gpu --name "$name" \
    -o "$out/$name.json" 2>&1 | tee "$out/calibrate.log"
