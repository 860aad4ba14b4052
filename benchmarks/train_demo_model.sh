#!/usr/bin/env bash
# Reproduce the shipped demo model (jzi_ros/data/demo_model.safetensors) with one command:
#   benchmarks/train_demo_model.sh [WORKDIR]      (default .cache/demo_train; ~30 min on
#                                                  2 idle CPU cores)
# 1. prepare: the demo world (seed 0), its map pyramid (4x4 grid, depth 3, 112 px tiles) and
#    16,000 training drone images on 16 random days + 600 validation images on 2 other days
#    (seasons, sun, colours, blur, noise, occluders; validation days never train);
# 2. jzi train with benchmarks/demo_model.yaml (from scratch, CPU), then
#    benchmarks/demo_model_stage2.yaml (continues at a lower learning rate);
# 3. finalize: embed the map, calibrate the covariance scale on the validation images, store the
#    demo card (world + tile size) in the metadata and copy the checkpoint to jzi_ros/data/.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="${1:-.cache/demo_train}"
PY="${PYTHON:-.venv/bin/python}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
"$PY" benchmarks/demo_recipe.py prepare "$WORK" --train 16000 --val 600 --styles 16
rm -rf "$WORK/run" "$WORK/run2"
"$PY" -m jzi_ros.cli.main train --config benchmarks/demo_model.yaml \
    manifest="$WORK/dataset/manifest.csv" map="$WORK/map" out="$WORK/run"
"$PY" -m jzi_ros.cli.main train --config benchmarks/demo_model_stage2.yaml \
    manifest="$WORK/dataset/manifest.csv" map="$WORK/map" out="$WORK/run2" \
    init="$WORK/run/last.safetensors"
"$PY" benchmarks/demo_recipe.py finalize "$WORK/run2" "$WORK" --checkpoint last.safetensors \
    --out jzi_ros/data/demo_model.safetensors
