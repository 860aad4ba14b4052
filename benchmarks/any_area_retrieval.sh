#!/usr/bin/env bash
# The retrieval baseline on the views of an any-area run, at the zoom's training budget
# (docs/retrieval.md, "Real imagery"):
#   benchmarks/any_area_retrieval.sh WORKDIR MAP_RASTER [KEY=VALUE ...]
# e.g. after benchmarks/any_area_cpu.sh shared/data/telluric/overlap1.tif \
#        shared/data/telluric/overlap2.tif .cache/telluric:
#      benchmarks/any_area_retrieval.sh .cache/telluric shared/data/telluric/overlap1.tif
# WORKDIR holds that run's map, val and test views and the zoom's run (run/summary.json). The
# retrieval model is trained with the same config, rasters and batch for as many steps as the
# zoom took (max_steps; max_minutes only as a safety cap), calibrated on the same validation
# views, and the test views are scored with --method retrieval and retrieval-refine
# (WORKDIR/report-retrieval*), then the zoom's methods again in the same run for the table.
# Environment: as any_area_cpu.sh (PYTHON, CONFIG, DEVICE, ALTITUDE, TRAIN_RASTERS).
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="$1"; MAP_RASTER="$2"; shift 2
PY="${PYTHON:-.venv/bin/python}"
ALTITUDE="${ALTITUDE:-500,800}"
CONFIG="${CONFIG:-benchmarks/any_area_cpu.yaml}"; DEVICE="${DEVICE:-cpu}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
JZI=("$PY" -m jzi_ros.cli.main)
STEPS=$("$PY" -c "import json, sys; print(json.load(open(sys.argv[1]))['final']['step'])" \
    "$WORK/run/summary.json")
SOURCES="[$(realpath "$MAP_RASTER")"
for raster in ${TRAIN_RASTERS:-}; do SOURCES="$SOURCES, $(realpath "$raster")"; done
SOURCES="$SOURCES]"
IFS=, read -r ALT_LO ALT_HI <<< "$ALTITUDE"
NOMINAL=$(( (${ALT_LO%.*} + ${ALT_HI%.*}) / 2 ))
rm -rf "$WORK/retrieval"
echo "== retrieval: $STEPS steps, as the zoom"
"${JZI[@]}" train-retrieval --config "$CONFIG" --no-progress \
    manifest="$WORK/val/manifest.csv" map="$WORK/map" out="$WORK/retrieval" \
    "render.sources=$SOURCES" "render.sampling.altitude_m=[$ALT_LO, $ALT_HI]" \
    max_steps="$STEPS" max_minutes=240 "$@"
cp "$WORK/retrieval/best.safetensors" "$WORK/retrieval.safetensors"
"${JZI[@]}" localize --map "$WORK/map" --retrieval-model "$WORK/retrieval.safetensors" \
    --device "$DEVICE" --calibrate "$WORK/val/manifest.csv" --no-progress
for METHOD in retrieval retrieval-refine zoom refine classical; do
    echo "== test views: --method $METHOD"
    "${JZI[@]}" evaluate "$WORK/test/manifest.csv" --map "$WORK/map" \
        --model "$WORK/model.safetensors" --retrieval-model "$WORK/retrieval.safetensors" \
        --device "$DEVICE" --out "$WORK/report-$METHOD" --method "$METHOD" \
        --nominal-height "$NOMINAL" --overwrite --no-progress
done
