#!/usr/bin/env bash
# The issue's GPU figures on a fresh GPU machine with this repository: install (skipped when the pinned torch is
# already there), then every measurement of benchmarks/gpu_paper.py within its time budget (about 8 minutes of
# measuring; ~10 with the install). Writes benchmarks/out/gpu-paper.json, and a copy into $OUT when set.
#   bash benchmarks/gpu_paper.sh [extra gpu_paper.py options, e.g. --budget 420]
set -euo pipefail
cd "$(dirname "$0")/.."
if ! python -c 'import torch, torchvision, sys; sys.exit(not (torch.__version__.startswith("2.14.1") and torchvision.__version__.startswith("0.29.1")))' 2>/dev/null; then
  pip install torch==2.14.1 torchvision==0.29.1
fi
python -c 'import ioda' 2>/dev/null || pip install -e .
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
IODA_PROGRESS=0 python benchmarks/gpu_paper.py --device cuda "$@"
