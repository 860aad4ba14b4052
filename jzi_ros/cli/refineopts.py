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
The refinement options shared by ``jzi replay`` and ``jzi bench`` (one definition, two users).

``--method`` picks what localizes a frame: ``zoom`` (the policy alone), ``refine`` (the zoom,
then geometric refinement against the map imagery), ``classical`` (registration against the
map's whole feature index, no model), ``retrieval`` (the retrieval baseline: nearest map view
in a contrastively trained embedding, ``--retrieval-model``; docs/retrieval.md) or
``retrieval-refine`` (retrieval's top views, then the same geometric refinement).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from jzi_ros.errors import JziError

METHODS = ("zoom", "refine", "classical", "retrieval", "retrieval-refine")
REFINING = ("refine", "retrieval-refine")  # methods whose fixes go through the Refiner


def add_arguments(parser: argparse.ArgumentParser, method: bool = True,
                  sequence: bool = True) -> None:
    """Add the refinement options (``sequence``: the tracking ones, for frames in order)."""
    if method:
        parser.add_argument("--method", choices=METHODS, default="zoom",
                            help="zoom: the policy; refine: zoom + geometric refinement "
                                 "against the map imagery; classical: registration against "
                                 "the whole map's feature index (no model); retrieval: the "
                                 "nearest map view in a contrastive embedding (the paper's "
                                 "baseline; needs --retrieval-model); retrieval-refine: "
                                 "retrieval's top views, then the geometric refinement")
        parser.add_argument("--retrieval-model", type=Path, default=None, metavar="PATH",
                            help="retrieval, retrieval-refine: checkpoint written by jzi "
                                 "train-retrieval")
    camera = parser.add_mutually_exclusive_group()
    camera.add_argument("--intrinsics", metavar="FX,FY,CX,CY", default=None,
                        help="refine/classical: camera intrinsics of the frames in pixels")
    camera.add_argument("--hfov", type=float, default=None, metavar="DEG",
                        help="refine/classical: horizontal field of view instead (square "
                             "pixels, centred principal point); unset: 70 deg with a warning "
                             "(jzi evaluate: a manifest row's hfov first)")
    parser.add_argument("--detector", choices=("sift", "orb"), default="sift",
                        help="refine/classical: local features")
    parser.add_argument("--nominal-height", type=float, default=None, metavar="M",
                        help="refine: expected height above ground (sets the map resolution "
                             "the frame is matched at); unset: RefineConfig's default")
    parser.add_argument("--georef-sigma-m", type=float, default=None, metavar="M",
                        help="refine/classical: the map imagery's georeferencing 1-sigma "
                             "(metres per axis) added to every registered fix's covariance "
                             "(with --fusion: once to every filtered fix's); unset: the "
                             "map's (`jzi map set DIR --georef-sigma-m M`)")
    parser.add_argument("--global-fallback", action="store_true",
                        help="refine: when no cell around the zoom's answer registers, "
                             "register against the map's whole feature index (the classical "
                             "search; tens to hundreds of ms more on those frames)")
    if not sequence:
        return
    parser.add_argument("--refine-track", type=int, default=None, metavar="N",
                        help="refine: frames in sequence (replay, bench) are registered by "
                             "tracking the last registered frame's map matches (Lucas-Kanade, "
                             "a few ms instead of tens) for up to N frames in a row before "
                             "SIFT runs again; 0 (default): SIFT on every frame")
    parser.add_argument("--refine-async", action="store_true",
                        help="refine, with --refine-track: SIFT runs on a background thread "
                             "and a later frame tracks from its result (a frame that starts a "
                             "sequence keeps the zoom's fix); replay: the next frame, waiting "
                             "if SIFT still runs (deterministic); bench: the first frame after "
                             "it finished, never waiting (as the node)")


def refine_config(args: argparse.Namespace):
    """Return the RefineConfig the options ask for."""
    from jzi_ros.inference.refine import RefineConfig

    chosen = {"detector": args.detector, "hfov_deg": args.hfov,
              "nominal_height_m": args.nominal_height, "georef_sigma_m": args.georef_sigma_m,
              "global_fallback": getattr(args, "global_fallback", False) or None,
              "track_frames": getattr(args, "refine_track", None),
              "track_async": getattr(args, "refine_async", False) or None}
    return RefineConfig(**{k: v for k, v in chosen.items() if v is not None})


def intrinsics(args: argparse.Namespace):
    """Return Intrinsics from --intrinsics, or None (the frame size and --hfov decide)."""
    from jzi_ros.inference.camera_pose import Intrinsics

    if args.intrinsics is None:
        return None
    return Intrinsics.parse(args.intrinsics, "--intrinsics")


def check_sequence_options(method: str, args: argparse.Namespace) -> None:
    """Refuse --refine-track where nothing is refined (JziError naming the fix)."""
    if method not in REFINING and getattr(args, "refine_track", None):
        raise JziError(f"--refine-track tracks refinement's registrations: it needs --method "
                       f"{' or '.join(REFINING)} (got --method {method})")


def wrap(method: str, zoom, map_dir, args: argparse.Namespace):
    """Return the localizer for ``method``; ``zoom`` makes the zoom Localizer when needed."""
    check_sequence_options(method, args)
    if method == "classical":
        from jzi_ros.evaluation.classical import ClassicalLocalizer
        return ClassicalLocalizer(map_dir, refine_config(args), intrinsics(args))
    if method == "retrieval":
        return retrieval_localizer(map_dir, args)
    localizer = retrieval_localizer(map_dir, args) if method == "retrieval-refine" else zoom()
    if method == "zoom":
        return localizer
    from jzi_ros.inference.refine import Refiner, RefiningLocalizer
    return RefiningLocalizer(localizer, Refiner.for_map(map_dir, refine_config(args)),
                             intrinsics(args))


def localizer(args: argparse.Namespace):
    """Return the localizer the parsed options ask for (``--method``, zoom when absent)."""
    from jzi_ros.inference.localizer import Localizer
    from jzi_ros.inference.options import localizer_config

    method = getattr(args, "method", "zoom")  # jzi evaluate has no --method
    if args.model is None and method not in ("classical", "retrieval", "retrieval-refine"):
        raise JziError(f"--model is needed for --method {method}")
    return wrap(method, lambda: Localizer.from_paths(
        args.map, args.model, localizer_config(args)), args.map, args)


def retrieval_localizer(map_dir, args: argparse.Namespace):
    """Return the retrieval baseline's localizer for ``--method retrieval``."""
    path = getattr(args, "retrieval_model", None)
    if path is None:
        raise JziError(f"--method {getattr(args, 'method', 'retrieval')} needs "
                       "--retrieval-model PATH (a checkpoint written by `jzi train-retrieval`; "
                       "docs/retrieval.md)")
    from jzi_ros.inference.options import localizer_config
    from jzi_ros.inference.retrieval import RetrievalLocalizer

    # the zoom's options where they apply (gate and scale: unset = the calibrated ones)
    return RetrievalLocalizer(map_dir, path, device=getattr(args, "device", None) or "cpu",
                              progress=not getattr(args, "no_progress", False),
                              config=localizer_config(args))
