#!/usr/bin/env bash
# Reproduce the shipped demo model (jzi_ros/data/demo_model.safetensors) with one command:
#   benchmarks/train_demo_model.sh [WORKDIR]      (default .cache/demo_train; ~20 min on
#                                                  2 idle CPU cores)
# 1. prepare: the demo world (seed 0), its map pyramid (4x4 grid, depth 3, 112 px tiles) and
#    8,000 training + 600 validation drone images rendered on other days (random seasons, sun,
#    colours, blur, noise, occluders; validation days are never used for training);
# 2. jzi train with benchmarks/demo_model.yaml (from scratch, CPU);
# 3. finalize: embed the map, calibrate the covariance scale on the validation images, store the
#    demo card (world + tile size) in the metadata and copy the checkpoint to jzi_ros/data/.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="${1:-.cache/demo_train}"
PY="${PYTHON:-.venv/bin/python}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
"$PY" -m jzi_ros.demo.recipe prepare "$WORK" --train 8000 --val 600
rm -rf "$WORK/run"
"$PY" -m jzi_ros.cli.main train --config benchmarks/demo_model.yaml \
    manifest="$WORK/dataset/manifest.csv" map="$WORK/map" out="$WORK/run"
"$PY" -m jzi_ros.demo.recipe finalize "$WORK/run" "$WORK" --checkpoint last.safetensors \
    --out jzi_ros/data/demo_model.safetensors
