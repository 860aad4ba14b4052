#!/usr/bin/env bash
# Reproduce the shipped demo model (jzi_ros/data/demo_model.safetensors) with one command:
#   benchmarks/train_demo_model.sh [WORKDIR]      (default .cache/demo_train; ~30-45 min on
#                                                  2 CPU cores)
# 1. prepare: the demo world (seed 0), its map pyramid (4x4 grid, depth 3, 112 px tiles) and
#    8,000 training + 600 validation drone images rendered on other days (random seasons, sun,
#    colours, blur, noise, occluders; validation days are never used for training);
# 2. jzi train, stage 1 (benchmarks/demo_model.yaml, from scratch, CPU) and stage 2
#    (benchmarks/demo_model_stage2.yaml, continues from stage 1's last checkpoint);
# 3. finalize: embed the map, calibrate the covariance scale on the validation images, store the
#    demo card (world + tile size) in the metadata and copy the checkpoint to jzi_ros/data/.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="${1:-.cache/demo_train}"
PY="${PYTHON:-.venv/bin/python}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
"$PY" -m jzi_ros.demo.recipe prepare "$WORK" --train 8000 --val 600
rm -rf "$WORK/run" "$WORK/run2"
DATA=(manifest="$WORK/dataset/manifest.csv" map="$WORK/map")
"$PY" -m jzi_ros.cli.main train --config benchmarks/demo_model.yaml "${DATA[@]}" \
    out="$WORK/run"
"$PY" -m jzi_ros.cli.main train --config benchmarks/demo_model_stage2.yaml "${DATA[@]}" \
    init="$WORK/run/last.safetensors" out="$WORK/run2"
"$PY" -m jzi_ros.demo.recipe finalize "$WORK/run2" "$WORK" \
    --out jzi_ros/data/demo_model.safetensors
