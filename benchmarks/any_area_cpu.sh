#!/usr/bin/env bash
# One command from a map raster (+ optional training rasters) to a calibrated checkpoint and the
# test table with chance and a no-image prior beside it (docs/any-area.md):
#   benchmarks/any_area_cpu.sh MAP_RASTER TEST_RASTER [WORKDIR] [KEY=VALUE ...]
# e.g. benchmarks/any_area_cpu.sh shared/data/telluric/overlap1.tif \
#        shared/data/telluric/overlap2.tif .cache/telluric max_minutes=40
# The map is MAP_RASTER (largest covered square, 4x4 grid, depth 3, 112 px tiles); training
# views are rendered on the fly from MAP_RASTER and the rasters in $TRAIN_RASTERS (space
# separated; other years or seasons); validation views (for calibration) from MAP_RASTER on
# other "days"; test views from TEST_RASTER only, which training never reads. The test views are
# scored three ways (zoom, zoom + refinement, classical registration; WORKDIR/report-METHOD).
# Environment: PYTHON (default .venv/bin/python), CONFIG (the training config, default
# benchmarks/any_area_cpu.yaml), DEVICE (cpu; cuda for the GPU recipe, any_area_gpu.sh),
# ALTITUDE (default 500,800 metres),
# VAL (150), TEST (300), HEADING (0,360: the test camera's heading range), REUSE=1 (keep
# WORKDIR/map, val and test from an earlier run with the same rasters: compare training
# settings on the same views).
set -euo pipefail
cd "$(dirname "$0")/.."
MAP_RASTER="$1"; TEST_RASTER="$2"; WORK="${3:-.cache/any_area}"; shift $(( $# < 3 ? $# : 3 ))
PY="${PYTHON:-.venv/bin/python}"
ALTITUDE="${ALTITUDE:-500,800}"; VAL="${VAL:-150}"; TEST="${TEST:-300}"
HEADING="${HEADING:-0,360}"
CONFIG="${CONFIG:-benchmarks/any_area_cpu.yaml}"; DEVICE="${DEVICE:-cpu}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
JZI=("$PY" -m jzi_ros.cli.main)
mkdir -p "$WORK"
if [[ "${REUSE:-0}" != 1 || ! -f "$WORK/test/manifest.csv" ]]; then
    "${JZI[@]}" map build "$MAP_RASTER" --out "$WORK/map" --fit --depth 3 --tile-px 112 \
        --overwrite --no-progress
    VIEWS=(--map "$WORK/map" --size 160x120 --altitude-m "$ALTITUDE" --pitch-deg 80,90
           "--heading-deg=$HEADING" --overwrite --no-progress)
    "${JZI[@]}" views "$MAP_RASTER" --out "$WORK/val" --split val --count "$VAL" --seed 1 \
        --photometric 0.7 "${VIEWS[@]}"
    "${JZI[@]}" views "$TEST_RASTER" --out "$WORK/test" --split test --count "$TEST" \
        --seed 2 "${VIEWS[@]}"
fi
SOURCES="[$(realpath "$MAP_RASTER")"
for raster in ${TRAIN_RASTERS:-}; do SOURCES="$SOURCES, $(realpath "$raster")"; done
SOURCES="$SOURCES]"
IFS=, read -r ALT_LO ALT_HI <<< "$ALTITUDE"
rm -rf "$WORK/run"
"${JZI[@]}" train --config "$CONFIG" --no-progress \
    manifest="$WORK/val/manifest.csv" map="$WORK/map" out="$WORK/run" \
    "render.sources=$SOURCES" "render.sampling.altitude_m=[$ALT_LO, $ALT_HI]" "$@"
cp "$WORK/run/best.safetensors" "$WORK/model.safetensors"
"${JZI[@]}" localize --map "$WORK/map" --model "$WORK/model.safetensors" --device "$DEVICE" \
    --calibrate "$WORK/val/manifest.csv"
# the same test views four ways: the zoom alone, the zoom + refinement against the map imagery
# (the camera's field of view from the manifest's hfov column; the map resolution matched to the
# mid altitude), the same with the whole-map fallback when the zoom's cells fail, and classical
# registration against the whole map (no model)
NOMINAL=$(( (${ALT_LO%.*} + ${ALT_HI%.*}) / 2 ))
for METHOD in zoom refine refine-fallback classical; do
    echo "== test views: --method $METHOD"
    FALLBACK=(); [[ "$METHOD" == refine-fallback ]] && FALLBACK=(--global-fallback)
    "${JZI[@]}" evaluate "$WORK/test/manifest.csv" --map "$WORK/map" \
        --model "$WORK/model.safetensors" --device "$DEVICE" --out "$WORK/report-$METHOD" \
        --method "${METHOD%-fallback}" "${FALLBACK[@]}" --nominal-height "$NOMINAL" \
        --overwrite --no-progress
done
