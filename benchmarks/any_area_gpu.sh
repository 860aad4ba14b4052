#!/usr/bin/env bash
# GPU recipe, one command: the CPU recipe's steps (benchmarks/any_area_cpu.sh: map, fixed
# validation and test views, training, calibration, the test table three ways) with the GPU
# training config and CUDA for training, calibration and evaluation:
#   benchmarks/any_area_gpu.sh MAP_RASTER TEST_RASTER [WORKDIR] [KEY=VALUE ...]
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=benchmarks/any_area_gpu.yaml DEVICE=cuda OMP_NUM_THREADS="${OMP_NUM_THREADS:-4}" \
    exec benchmarks/any_area_cpu.sh "$@"
