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

"""``jzi map build|embed|info|preview``: the onboard tile pyramid."""
from __future__ import annotations

import argparse
import json

from jzi_ros.cli import add_common_arguments, HelpFormatter
from jzi_ros.errors import JziError

COMMAND = "map"
HELP = "build, embed, inspect, preview and annotate an onboard map (tile pyramid)"
DESCRIPTION = """\
A map is a directory: manifest.json + views.npy (every non-terminal cell of the cell tree,
north-up RGB tiles in a local metric frame) + embeddings.safetensors once embedded.
`jzi map build` renders it from an orthophoto (GeoTIFF/COG/any GDAL raster with a CRS, an
MBTiles file or an XYZ z/x/y tile folder); `jzi map embed` encodes the views with a model;
`jzi map set` changes a manifest setting (the imagery's georeferencing 1-sigma) in place."""

GEOREF_HELP = ("horizontal georeferencing 1-sigma of the source imagery, metres per axis (e.g. "
               "a stated 6 m CE95 is 6 / 2.45 = 2.45); added to the covariance of every fix "
               "registered against the imagery")


def _floats(text: str, count: int, option: str, names: str) -> list[float]:
    try:
        values = [float(v) for v in text.replace(" ", "").split(",")]
    except ValueError:
        values = []
    if len(values) != count:
        raise JziError(f"{option} {text!r}: expected {count} comma-separated numbers {names}")
    return values


def _add_build(sub) -> None:
    p = sub.add_parser("build", help="render a map pyramid from imagery",
                       formatter_class=HelpFormatter)
    p.add_argument("source", metavar="SOURCE",
                   help="GeoTIFF/COG/any GDAL raster with a CRS, an .mbtiles file, or an XYZ "
                        "tile folder (z/x/y.png)")
    p.add_argument("--out", required=True, metavar="DIR", help="output map directory")
    root = p.add_mutually_exclusive_group(required=True)
    root.add_argument("--center", metavar="LAT,LON",
                      help="root square centre (degrees); needs --size")
    root.add_argument("--bounds", metavar="S,W,N,E",
                      help="lat/lon box; the root is the smallest square covering it")
    root.add_argument("--fit", action="store_true",
                      help="the largest square the source's imagery covers (no-data and "
                           "pure-black pixels excluded)")
    p.add_argument("--size", type=float, metavar="METRES", help="root square side with --center")
    p.add_argument("--grid", type=int, default=4, help="cells per side at each split (K)")
    p.add_argument("--depth", type=int, default=4, help="number of zoom steps (D)")
    p.add_argument("--tile-px", type=int, default=384, help="side of every view in pixels")
    p.add_argument("--crs", metavar="FILE_OR_STRING",
                   help="CRS of the source (WKT/PROJ file or e.g. EPSG:32610) when it has "
                        "none or a wrong one")
    p.add_argument("--max-nodata", type=float, default=0.5,
                   help="refuse if any level's views are more than this fraction uncovered")
    p.add_argument("--terminal-tiles", action="store_true",
                   help="also store the terminal cells (K**(2D) tiles, for visualisation only)")
    p.add_argument("--imagery-m-per-px", type=float, default=None, metavar="M",
                   help="resolution of the refinement imagery (imagery.tif + features.npz); "
                        "unset: the source's own, capped at 16384 px a side")
    p.add_argument("--no-imagery", action="store_true",
                   help="skip the refinement imagery (refinement and classical baseline off)")
    p.add_argument("--georef-sigma-m", type=float, default=None, metavar="M",
                   help=GEOREF_HELP + "; unset: unknown (0 used)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing DIR")
    p.add_argument("--allow-large", action="store_true",
                   help="build a map larger than 64 GiB (the size is estimated first)")
    p.add_argument("--model", metavar="CHECKPOINT",
                   help="also embed the views with this model checkpoint after building")
    p.add_argument("--batch-size", type=int, default=32, help="views per batch with --model")
    p.add_argument("--device", default="cpu", help="torch device for --model (cpu, cuda)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _add_embed(sub) -> None:
    p = sub.add_parser("embed", help="encode every view with a model's map encoder",
                       formatter_class=HelpFormatter)
    p.add_argument("map_dir", metavar="DIR", help="map directory")
    p.add_argument("--model", required=True, metavar="CHECKPOINT",
                   help="model checkpoint (.safetensors from `jzi train`)")
    p.add_argument("--batch-size", type=int, default=32, help="views per encoder batch")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    _add_build(sub)
    _add_embed(sub)
    p = sub.add_parser("info", help="print region, levels, cell sizes, coverage, embeddings",
                       formatter_class=HelpFormatter)
    p.add_argument("map_dir", metavar="DIR", help="map directory")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON instead")
    p = sub.add_parser("set", help="change a manifest setting without rebuilding",
                       formatter_class=HelpFormatter)
    p.add_argument("map_dir", metavar="DIR", help="map directory")
    p.add_argument("--georef-sigma-m", type=float, required=True, metavar="M",
                   help=GEOREF_HELP)
    p = sub.add_parser("preview", help="write the views along a path as one image",
                       formatter_class=HelpFormatter)
    p.add_argument("map_dir", metavar="DIR", help="map directory")
    p.add_argument("--path", default="", metavar="A,B,...",
                   help="action path, e.g. 7,6 (row-major child index per level; empty: root)")
    p.add_argument("--out", required=True, metavar="FILE.png", help="output image")
    for verb in sub.choices.values():  # -v / --threads after the verb too
        add_common_arguments(verb)


def _tree(args):
    from jzi_ros.geo import CellTree
    if args.fit:
        if args.size is not None:
            raise JziError("--size goes with --center, not with --fit")
        from jzi_ros.maps.fit import fit_root
        lat, lon, size = fit_root(args.source, args.crs)
        print(f"fitted root: --center {lat:.7f},{lon:.7f} --size {size:.1f}")
        return CellTree(lat, lon, size, args.grid, args.depth)
    if args.center is not None:
        if args.size is None:
            raise JziError("--center needs --size METRES (the root square side)")
        lat, lon = _floats(args.center, 2, "--center", "LAT,LON")
        return CellTree(lat, lon, args.size, args.grid, args.depth)
    if args.size is not None:
        raise JziError("--size goes with --center, not with --bounds")
    south, west, north, east = _floats(args.bounds, 4, "--bounds", "S,W,N,E")
    return CellTree.from_bounds(south, west, north, east, args.grid, args.depth)


def _embed(map_dir, model, batch_size: int, device: str, progress: bool) -> None:
    try:
        from jzi_ros.maps.embed import embed_map
    except ModuleNotFoundError as err:
        if err.name != "jzi_ros.maps.embed":
            raise
        raise JziError("map embedding is not available: jzi_ros.maps.embed is missing from "
                       "this installation") from None
    out = embed_map(map_dir, model, batch_size=batch_size, device=device, progress=progress)
    print(f"embeddings written to {out}")


def _build(args) -> int:
    from jzi_ros.extras import require_extra
    require_extra("jzi map build", "maps")
    from jzi_ros.maps.build import build_pyramid_timed
    tree = _tree(args)
    if args.model:  # before minutes of rendering, not after
        from jzi_ros.maps.embed import check_config_matches_tree
        from jzi_ros.model.checkpoint import read_header
        from jzi_ros.model.config import ModelConfig
        config = ModelConfig.from_dict(read_header(args.model)["config"])
        check_config_matches_tree(config, tree, str(args.out), str(args.model))
    result = build_pyramid_timed(args.source, args.out, tree, tile_px=args.tile_px,
                                 overwrite=args.overwrite, progress=not args.no_progress,
                                 max_nodata=args.max_nodata, crs=args.crs,
                                 terminal=args.terminal_tiles, allow_large=args.allow_large,
                                 imagery=not args.no_imagery,
                                 imagery_m_per_px=args.imagery_m_per_px,
                                 georef_sigma_m=args.georef_sigma_m)
    pyramid = result.pyramid
    nodata = ", ".join(f"L{k} {v:.1%}" for k, v in pyramid.nodata_fraction.items())
    print(f"map {pyramid.path}: {result.tiles} tiles of {pyramid.tile_px} px in "
          f"{result.seconds:.1f} s ({result.tiles_per_s:.1f} tiles/s), "
          f"{pyramid.views.nbytes / 2**20:.1f} MiB views; nodata {nodata}")
    from jzi_ros.maps.imagery import imagery_summary
    from jzi_ros.maps.preview import georef_line
    print(imagery_summary(pyramid.path))
    print(georef_line(pyramid))
    if args.model:
        _embed(pyramid.path, args.model, args.batch_size, args.device, not args.no_progress)
    return 0


def run(args: argparse.Namespace) -> int:
    from jzi_ros.maps.pyramid import MapPyramid
    if args.verb == "build":
        return _build(args)
    if args.verb == "embed":
        _embed(args.map_dir, args.model, args.batch_size, args.device, not args.no_progress)
        return 0
    if args.verb == "info":
        pyramid = MapPyramid.open(args.map_dir)
        if args.json:
            print(json.dumps(pyramid.manifest, indent=2))
        else:
            from jzi_ros.maps.preview import map_summary
            print(map_summary(pyramid))
        return 0
    if args.verb == "set":
        from jzi_ros.maps.preview import georef_line
        from jzi_ros.maps.pyramid import set_georef_sigma_m
        print(georef_line(set_georef_sigma_m(args.map_dir, args.georef_sigma_m)))
        return 0
    if args.verb == "preview":
        from jzi_ros.geo import parse_path
        from jzi_ros.maps.preview import write_preview
        pyramid = MapPyramid.open(args.map_dir)
        out = write_preview(pyramid, parse_path(args.path), args.out)
        print(f"preview written to {out}")
        return 0
    raise JziError(f"unknown map verb {args.verb!r}")
