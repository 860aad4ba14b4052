#!/usr/bin/env bash
# Train, calibrate and install the demo model (jzi_ros/data/demo_model.safetensors) with one
# command, through the generic path of docs/any-area.md (the demo world is "just another
# raster"):
#   benchmarks/train_demo_model.sh [WORKDIR] [KEY=VALUE ...]   (default .cache/demo_train;
#                                                  ~50 min on 2 CPU cores)
# 1. prepare: the demo world (seed 0), its map pyramid (4x4 grid, depth 3, 112 px tiles) and
#    one GeoTIFF per day (the same world on another day: season, sun, colours): 24 training
#    days and 2 validation days, never a flight's day (the demo flies day 0);
# 2. jzi views: 300 validation views from the 2 validation days (the flight's camera);
# 3. jzi train with benchmarks/demo_model.yaml: fresh views drawn on the fly from the training
#    days (render: block), a ResNet encoder from scratch, 2,466 steps, 1 data worker;
# 4. finalize: embed the map, calibrate the covariance scale on the validation views, store the
#    demo card (world, tile size, days) in the metadata and copy the checkpoint to
#    jzi_ros/data/;
# 5. calibrate-flights: fly the demo camera on three other days (flight seeds 1-3, never the
#    test flight's 0) and calibrate the confidence gate and covariance scale on those frames,
#    which are closer to the demo's than the `jzi views` validation views;
# 6. fit-fusion: fit the temporal filter on the same flights and print the values for
#    FusionConfig's defaults (jzi_ros/inference/fusion_config.py; docs/fusion.md).
# KEY=VALUE arguments override the training config (e.g. max_steps=200).
# Environment: PYTHON (default .venv/bin/python), OMP_NUM_THREADS (default 1), REUSE=1 (keep
# WORKDIR's world, map, days and validation views from an earlier run).
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="${1:-.cache/demo_train}"; shift $(( $# < 1 ? $# : 1 ))
PY="${PYTHON:-.venv/bin/python}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
JZI=("$PY" -m jzi_ros.cli.main)
if [[ "${REUSE:-0}" != 1 || ! -f "$WORK/val/manifest.csv" ]]; then
    "$PY" benchmarks/demo_recipe.py prepare "$WORK"
    "${JZI[@]}" views "$WORK"/days/val/*.tif --map "$WORK/map" \
        --out "$WORK/val" --split val --count 300 --seed 1 --size 320x240 \
        "--heading-deg=-20,20" --altitude-m 200,320 --pitch-deg 82,90 --overwrite --no-progress
fi
SOURCES="[$(realpath "$WORK"/days/train/*.tif | paste -sd, | sed 's/,/, /g')]"
rm -rf "$WORK/run"
"${JZI[@]}" train --config benchmarks/demo_model.yaml --no-progress \
    manifest="$WORK/val/manifest.csv" map="$WORK/map" out="$WORK/run" \
    "render.sources=$SOURCES" "$@"
"$PY" benchmarks/demo_recipe.py finalize "$WORK/run" "$WORK" "$WORK/val/manifest.csv" \
    --out jzi_ros/data/demo_model.safetensors
"$PY" benchmarks/demo_recipe.py calibrate-flights --workdir "$WORK/demo"
"$PY" benchmarks/demo_recipe.py fit-fusion --workdir "$WORK/demo"
