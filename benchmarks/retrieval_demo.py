#!/usr/bin/env python3
# Copyright 2026 jzi_ros contributors
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

"""
Zoom vs the retrieval baseline vs chance on the demo flight (docs/retrieval.md), one command.

    .venv/bin/python benchmarks/retrieval_demo.py --demo DEMO_DIR [--work WORKDIR] [--minutes 42]

1. prepare (skipped when WORKDIR has it): the demo world's map and training/validation days
   and 300 validation views, exactly as ``benchmarks/train_demo_model.sh`` makes them for the
   shipped zoom model;
2. ``jzi train-retrieval`` with the zoom's own training config (benchmarks/demo_model.yaml:
   the same ResNet encoder, the same rendered views and augmentations) under a wall-clock
   budget (skipped when WORKDIR/run/best.safetensors exists);
3. ``jzi replay`` of the demo flight (DEMO_DIR/bag on DEMO_DIR/map, made by ``jzi demo``) with
   ``--method zoom`` (the shipped model) and ``--method retrieval``, torch on the CPU with one
   thread; chance (a uniform terminal cell) and the no-image prior (the map's centre) scored
   on the same frames' ground truth;
4. prints the table and writes WORKDIR/retrieval_demo.json and .md.
"""
import argparse
import csv
import json
import os
from pathlib import Path
import subprocess
import sys

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout's jzi_ros, installed or not

from jzi_ros.demo.bag import GT_TOPIC, IMAGE_TOPIC  # noqa: E402
from jzi_ros.evaluation.images import baselines  # noqa: E402
from jzi_ros.maps.pyramid import MapPyramid  # noqa: E402

SHIPPED = ROOT / "jzi_ros" / "data" / "demo_model.safetensors"
RECALL = ("25", "50", "100", "250")


def run(command: list[str]) -> None:
    """Run one step, echoing the exact command line (the docs quote them)."""
    print("$ " + " ".join(str(c) for c in command), flush=True)
    subprocess.run([str(c) for c in command], check=True, cwd=ROOT,
                   env={**os.environ, "OMP_NUM_THREADS": "1"})


def prepare(python: str, work: Path) -> None:
    if not (work / "days" / "train").is_dir():
        run([python, "benchmarks/demo_recipe.py", "prepare", work])
    if not (work / "val" / "manifest.csv").is_file():
        run([python, "-m", "jzi_ros.cli.main", "views", *sorted((work / "days" / "val").glob(
            "*.tif")), "--map", work / "map", "--out", work / "val", "--split", "val",
             "--count", "300", "--seed", "1", "--size", "320x240", "--heading-deg=-20,20",
             "--altitude-m", "200,320", "--pitch-deg", "82,90", "--overwrite", "--no-progress"])


def train(python: str, work: Path, minutes: float) -> Path:
    best = work / "run" / "best.safetensors"
    if best.is_file():
        print(f"reusing {best}")
        return best
    sources = ", ".join(str(p.resolve()) for p in sorted((work / "days" / "train").glob(
        "*.tif")))
    run([python, "-m", "jzi_ros.cli.main", "train-retrieval", "--config",
         "benchmarks/demo_model.yaml", "--no-progress", "--threads", "1",
         f"manifest={work / 'val' / 'manifest.csv'}", f"map={work / 'map'}",
         f"out={work / 'run'}", f"render.sources=[{sources}]", "max_steps=null",
         f"max_minutes={minutes:g}"])
    return best


def replay(python: str, demo: Path, out: Path, method: str, model_args: list) -> dict:
    run([python, "-m", "jzi_ros.cli.main", "replay", demo / "bag", "--map", demo / "map",
         "--image-topic", IMAGE_TOPIC, "--gt-topic", GT_TOPIC, "--method", method,
         *model_args, "--backend", "torch", "--device", "cpu", "--threads", "1", "--out", out,
         "--overwrite", "--no-plots", "--no-progress"])
    return json.loads((out / "report.json").read_text())


def truth_en(report_dir: Path, pyramid: MapPyramid):
    import numpy as np

    with open(report_dir / "frames.csv", encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if not r["skip"]]
    lat = np.array([float(r["gt_latitude"]) for r in rows])
    lon = np.array([float(r["gt_longitude"]) for r in rows])
    return np.stack(pyramid.tree.to_local(lat, lon), axis=1)


def row(name: str, block: dict, paths: dict | None, latency: float | None) -> dict:
    return {"method": name, "recall": {d: block["recall"][d] for d in RECALL},
            "median_m": block["median_m"], "path_accuracy": paths, "ms_per_frame": latency}


def table(rows: list[dict], depth: int) -> str:
    head = ("| method | " + " | ".join(f"R@{d} m" for d in RECALL) + " | median m | "
            + " | ".join(f"right cell, level {lv}" for lv in range(1, depth + 1))
            + " | ms/frame |")
    lines = [head, "|---|" + "---:|" * (len(RECALL) + depth + 2)]
    for r in rows:
        paths = r["path_accuracy"] or {}
        cells = [f"{100 * paths[str(lv)]:.1f} %" if paths.get(str(lv)) is not None else "-"
                 for lv in range(1, depth + 1)]
        latency = "-" if r["ms_per_frame"] is None else f"{r['ms_per_frame']:.1f}"
        lines.append(f"| {r['method']} | " + " | ".join(
            f"{100 * r['recall'][d]:.1f} %" for d in RECALL)
            + f" | {r['median_m']:.1f} | " + " | ".join(cells) + f" | {latency} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", type=Path, required=True,
                        help="a `jzi demo` work directory (its map/ and bag/)")
    parser.add_argument("--work", type=Path, default=ROOT / ".cache" / "retrieval_demo",
                        help="where the training data, run and reports go")
    parser.add_argument("--minutes", type=float, default=42.0,
                        help="wall-clock budget of the retrieval training")
    parser.add_argument("--python", default=sys.executable,
                        help="the interpreter that runs jzi (default: this one)")
    args = parser.parse_args()
    work = args.work.resolve()
    demo = args.demo.resolve()
    prepare(args.python, work)
    retrieval_model = train(args.python, work, args.minutes)
    zoom = replay(args.python, demo, work / "replay_zoom", "zoom", ["--model", SHIPPED])
    retrieval = replay(args.python, demo, work / "replay_retrieval", "retrieval",
                       ["--retrieval-model", retrieval_model])
    pyramid = MapPyramid.open(demo / "map")
    base = baselines(pyramid.tree, truth_en(work / "replay_zoom", pyramid), None)
    rows = [row("zoom (shipped demo model)", zoom["top1"], zoom["path_accuracy"],
                zoom["latency_ms"]["localize"]["median_ms"]),
            # retrieval stops at the finest view level: it has no terminal-cell answer
            row("retrieval (jzi train-retrieval)", retrieval["top1"],
                {k: v for k, v in retrieval["path_accuracy"].items()
                 if int(k) < pyramid.tree.depth},
                retrieval["latency_ms"]["localize"]["median_ms"]),
            row("chance (uniform terminal cell)", base["chance"],
                base["chance"]["path_accuracy"], None),
            row("no-image prior (map centre)", base["prior"], base["prior"]["path_accuracy"],
                None)]
    text = table(rows, pyramid.tree.depth)
    frames = zoom["frames"]["used"]
    summary = {"frames": frames, "retrieval_frames": retrieval["frames"]["used"],
               "retrieval_model": str(retrieval_model),
               "retrieval_training": json.loads((work / "run" / "summary.json").read_text()),
               "rows": rows}
    (work / "retrieval_demo.json").write_text(json.dumps(summary, indent=2) + "\n")
    (work / "retrieval_demo.md").write_text(text + "\n")
    print(f"\n{frames} frames of {demo / 'bag'}\n{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
