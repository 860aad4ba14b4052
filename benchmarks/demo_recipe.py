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
The demo model's recipe as a command: ``benchmarks/demo_recipe.py prepare|finalize|docs-plot``.

``benchmarks/train_demo_model.sh`` runs it; the steps themselves are jzi_ros.demo.recipe.
"""
import argparse
from pathlib import Path
import sys

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jzi_ros.demo import recipe  # noqa: E402  (after the path setup)
from jzi_ros.demo.world import WorldSpec  # noqa: E402
from jzi_ros.errors import JziError  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Run one step of the recipe; a JziError is one line and exit code 2."""
    parser = argparse.ArgumentParser(prog="benchmarks/demo_recipe.py",
                                     description=recipe.__doc__)
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("prepare", help="world, map pyramid and one GeoTIFF per day")
    p.add_argument("dir", type=Path, help="output directory")
    p.add_argument("--world-seed", type=int, default=0, help="seed of the demo world")
    p.add_argument("--train-days", type=int, nargs="+", default=list(recipe.TRAIN_DAYS),
                   metavar="SEED", help=f"seeds of the training days (>= "
                   f"{recipe.FIRST_TRAINING_DAY}; lower seeds are flight days)")
    p.add_argument("--val-days", type=int, nargs="+", default=list(recipe.VAL_DAYS),
                   metavar="SEED", help="seeds of the validation days")
    f = sub.add_parser("finalize", help="calibrate and ship the trained checkpoint")
    f.add_argument("run", type=Path, help="jzi train output directory (has best.safetensors)")
    f.add_argument("dir", type=Path, help="the directory `prepare` wrote")
    f.add_argument("val", type=Path, help="`jzi views` validation manifest (calibration)")
    f.add_argument("--out", type=Path, default=Path("jzi_ros/data/demo_model.safetensors"),
                   help="where the shipped checkpoint goes")
    f.add_argument("--beam-width", "--beam", dest="beam", type=int, default=4,
                   help="beam width used for calibration")
    f.add_argument("--checkpoint", default="best.safetensors",
                   help="which checkpoint of the run to ship")
    d = sub.add_parser("docs-plot", help="copy a demo report's plot for the README")
    d.add_argument("report", type=Path, help="the demo's report directory")
    d.add_argument("--out", type=Path, default=Path("docs/demo_trajectory.png"),
                   help="where the small PNG goes")
    d.add_argument("--plot", default="fusion_tracks.png",
                   help="which plot of the report (trajectory.png: single frames with ellipses)")
    v = sub.add_parser("fit-fusion", help="fit the temporal filter on validation flights")
    v.add_argument("--workdir", type=Path, required=True, help="a `jzi demo` work directory")
    v.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3],
                   help="validation flight seeds (not 0: the demo's test flight)")
    c = sub.add_parser("calibrate-flights",
                       help="calibrate the shipped model on validation flights (other days)")
    c.add_argument("--workdir", type=Path, required=True, help="a `jzi demo` work directory")
    c.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3],
                   help="validation flight seeds (not 0: the demo's test flight)")
    c.add_argument("--model", type=Path, default=Path("jzi_ros/data/demo_model.safetensors"),
                   help="the checkpoint to calibrate (its JSON card is rewritten)")
    c.add_argument("--beam-width", "--beam", dest="beam", type=int, default=4,
                   help="beam width used for calibration")
    args = parser.parse_args(argv)
    try:
        if args.step == "calibrate-flights":
            info = recipe.calibrate_on_flights(args.workdir, args.seeds, args.model, args.beam)
            cal = info["calibration"]
            print(f"{args.model}: calibrated on {cal['frames']} frames of {info['calibrated_on']}"
                  f": covariance scale {cal['covariance_scale']:.3g}, confidence gate "
                  f"{cal['confidence_threshold']:.3g} ({cal['gate_fix_rate']:.0%} FIX)")
        elif args.step == "fit-fusion":
            from jzi_ros.evaluation.fusion_replay import fitted_words

            fitted = recipe.fit_fusion(args.workdir, args.seeds)
            print(f"fitted on {fitted['frames']} frames x {fitted['seeds']} filter seeds: "
                  f"{fitted_words(fitted)}\nR@100 m by value: {fitted['recall_100']}\n"
                  f"FIX gate mass/sigma, right minus wrong FIXes: "
                  f"{fitted['gate_right_minus_wrong']}")
        elif args.step == "docs-plot":
            path = recipe.docs_plot(args.report, args.out, plot=args.plot)
            print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB)")
        elif args.step == "prepare":
            recipe.prepare(args.dir, WorldSpec(seed=args.world_seed), tuple(args.train_days),
                           tuple(args.val_days))
        else:
            info = recipe.finalize(args.run, args.dir, args.val, args.out, args.beam,
                                   args.checkpoint)
            print(f"wrote {args.out} ({info['bytes'] / 1e6:.1f} MB), covariance scale "
                  f"{info['calibration']['covariance_scale']:.3g}")
    except JziError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
