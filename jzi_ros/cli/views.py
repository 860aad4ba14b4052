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

"""``jzi views``: write a fixed validation or test set of drone views rendered from rasters."""
from __future__ import annotations

import argparse
from pathlib import Path

from jzi_ros.errors import JziError

COMMAND = "views"
HELP = "render a fixed set of drone views (val/test manifest) from rasters of the map's area"
DESCRIPTION = """\
Render COUNT drone-camera views whose nadir is uniform over MAP's root square, from one or
more georeferenced rasters of the same area (other years or seasons), and write OUT/images/,
OUT/manifest.csv (image, latitude, longitude, heading, split, pitch, altitude, source, hfov) and
OUT/views.json. Training draws fresh views on the fly from a config's `render:` block; this
command is for the fixed sets that score it. Render the test set from a raster training never
reads (e.g. the other date): `jzi train` refuses render sources that rendered test rows."""


def _pair(text: str) -> list[float]:
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise JziError(f"expected LOW,HIGH (two comma-separated numbers), got {text!r}") from None
    return [low, high]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sources", nargs="+", metavar="RASTER",
                        help="georeferenced rasters of the map's area (any GDAL raster)")
    parser.add_argument("--map", required=True, type=Path, metavar="DIR",
                        help="map directory (its root square and cell tree)")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR",
                        help="output directory")
    parser.add_argument("--count", type=int, default=500, help="number of views")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"),
                        help="split recorded in the manifest")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--crs", metavar="FILE_OR_STRING",
                        help="CRS of the rasters when they carry none")
    camera = parser.add_argument_group("camera (LOW,HIGH ranges, drawn uniformly)")
    camera.add_argument("--size", default="320x240", metavar="WxH", help="image size")
    camera.add_argument("--heading-deg", type=_pair, default=[0.0, 360.0], metavar="LO,HI",
                        help="heading policy: 0,360 any heading; -10,10 a north-up gimbal")
    camera.add_argument("--altitude-m", type=_pair, default=[80.0, 150.0], metavar="LO,HI")
    camera.add_argument("--pitch-deg", type=_pair, default=[65.0, 90.0], metavar="LO,HI",
                        help="optical axis below the horizon (90 = nadir)")
    camera.add_argument("--hfov-deg", type=_pair, default=[60.0, 80.0], metavar="LO,HI")
    camera.add_argument("--degrade", type=float, default=1.0,
                        help="sensor degradation (blur, noise, occluders); 0 = clean")
    camera.add_argument("--photometric", type=float, default=0.0,
                        help="'other day' colour shift (0 = the raster's own light)")
    camera.add_argument("--min-valid", type=float, default=0.9,
                        help="fraction of a view that must see imagery (else redrawn)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from jzi_ros.maps.pyramid import MapPyramid
    from jzi_ros.training.render import RenderSpec, ViewRenderer, write_view_set

    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        raise JziError(f"--size {args.size!r}: expected WIDTHxHEIGHT, e.g. 320x240") from None
    sampling = {"width": width, "height": height, "heading_deg": args.heading_deg,
                "altitude_m": args.altitude_m, "pitch_deg": args.pitch_deg,
                "hfov_deg": args.hfov_deg, "degrade": args.degrade}
    spec = RenderSpec(sources=tuple(args.sources), crs=args.crs, sampling=sampling,
                      photometric=args.photometric, min_valid=args.min_valid,
                      samples_per_epoch=args.count)
    tree = MapPyramid.open(args.map).tree
    renderer = ViewRenderer.from_spec(spec, tree)
    try:
        out = write_view_set(renderer, args.out, args.count, args.split, args.seed,
                             overwrite=args.overwrite, progress=not args.no_progress)
    finally:
        renderer.close()
    print(f"wrote {args.count} {args.split} views to {out / 'manifest.csv'}")
    return 0
