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

"""``jzi bench``: latency per backend/device/precision, and the paper's way for comparison."""
from __future__ import annotations

import argparse
import contextlib
import logging
import math
from pathlib import Path
import tempfile
import time

from jzi_ros.cli import refineopts
from jzi_ros.errors import JziError

COMMAND = "bench"
HELP = "time the ground encoder, a full frame and the paper's way, per backend and device"
DESCRIPTION = """\
For every backend/device/precision/beam combination: the ground encoder alone, a full
Localizer frame (preprocess + encoder + D-step cached beam search + posterior), and the same
frame the paper's way (map views re-encoded at every step, decoder re-run on the prefix
without cache; torch only). Median and 95th percentile after warm-up. Use --map/--model for a
trained model, or --preset to time a randomly initialised model of a named size (e.g.
dinov2-b14, the paper's 384 px ViT-B) on a synthetic map. --backend, --device, --precision
and --beam-width take several values (auto: every installed backend / cpu and cuda / fp16 on
CUDA, fp32 on CPU). With --manifest the rows also report
accuracy on labelled frames (how the default beam width was chosen): median error, recall
within 25/50/100/250 m (R@d m, as in every jzi report) and mean NEES.
"""

LOG = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from jzi_ros.inference.options import add_localizer_arguments

    parser.add_argument("--map", type=Path, dest="map_dir", default=None,
                        help="embedded map directory (with --model)")
    parser.add_argument("--model", type=Path, default=None, help="checkpoint (with --map)")
    parser.add_argument("--preset", default=None,
                        help="bench a random model of this size instead (tiny, demo, "
                             "dinov2-s14, dinov2-b14) on a synthetic map")
    parser.add_argument("--grid", type=int, default=4, help="--preset: tree grid K")
    parser.add_argument("--depth", type=int, default=4, help="--preset: tree depth D")
    add_localizer_arguments(parser, sweep=True)
    parser.add_argument("--frames", type=int, default=30, help="timed frames per figure")
    parser.add_argument("--warmup", type=int, default=5, help="untimed frames first")
    parser.add_argument("--no-paper-way", action="store_true",
                        help="skip the (slow) paper-way timing")
    parser.add_argument("--manifest", type=Path, default=None,
                        help="dataset manifest: add accuracy on its labelled frames per row "
                             "(median error, R@25/50/100/250 m: the share within that many "
                             "metres, mean NEES; a north-up model reads its 'heading' column)")
    parser.add_argument("--split", default="val", choices=("val", "test", "train", "all"),
                        help="--manifest split to use")
    parser.add_argument("--limit", type=int, default=200,
                        help="--manifest: at most this many frames")
    parser.add_argument("--refine", action="store_true",
                        help="also time geometric refinement after the zoom and classical "
                             "registration, on a 320 x 240 nadir view (the demo camera) "
                             "rendered from the map imagery at --nominal-height (--map with "
                             "imagery.tif)")
    refineopts.add_arguments(parser, method=False)
    parser.add_argument("--retrieval-model", type=Path, default=None, metavar="PATH",
                        help="also time the retrieval baseline's frame (a checkpoint written "
                             "by jzi train-retrieval for this map) on the CPU, in torch "
                             "and, where --backend names onnxruntime or auto, ONNX Runtime: "
                             "preprocess, encoder, search over the map's finest views")
    parser.add_argument("--no-fusion", action="store_true",
                        help="skip timing the temporal filter (this map and a 65,536-cell map)")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE",
                        help="also write the rows as JSON (backend, device, dtype, encoder_ms, "
                             "frame_ms, paper_way_ms, each {median, p95})")


def _combinations(args: argparse.Namespace) -> list[tuple[str, str, str, int, str]]:
    import torch

    from jzi_ros.inference.backends.onnxruntime_backend import available_providers

    cuda = torch.cuda.is_available()
    devices = (["cpu"] + (["cuda"] if cuda else [])) if args.device == ["auto"] else args.device
    backends = args.backend
    if "auto" in backends:  # bench: every installed backend
        import importlib.util
        backends = ["torch"] + (["onnxruntime"] if available_providers() else []) + (
            ["tensorrt"] if cuda and importlib.util.find_spec("tensorrt") else [])
    combos = []
    for backend in backends:
        for device in devices:
            if backend == "tensorrt" and not device.startswith("cuda"):
                continue
            if (backend == "onnxruntime" and device.startswith("cuda")
                    and "CUDAExecutionProvider" not in available_providers()):
                continue
            for precision in args.precision:
                if precision == "auto":
                    precision = "fp16" if device.startswith("cuda") else "fp32"
                if backend == "onnxruntime" and precision == "fp16":
                    continue
                if device == "cpu" and precision == "fp16":
                    continue
                # how the CPU graph runs matters to torch on the CPU only
                graphs = args.cpu_graph if (backend, device) == ("torch", "cpu") else ["jit"]
                for beam in args.beam_width:
                    for graph in graphs:
                        combos.append((backend, device, precision, beam, graph))
    return combos


def _samples(args: argparse.Namespace, tree) -> list:
    from jzi_ros.inference.image import read_image
    from jzi_ros.training.manifest import samples_in_map

    rows = samples_in_map(args.manifest, tree, args.split)[:args.limit]
    if not rows:
        raise JziError(f"manifest {args.manifest}: no '{args.split}' frames inside the map")
    return [(read_image(s.image), s.latitude, s.longitude, s.heading) for s in rows]


def _imagery_frame(map_dir, height_m: float):
    """Return a near-nadir 320 x 240 view of the map imagery at the root centre, intrinsics."""
    images, intrinsics = _imagery_frames(map_dir, height_m, [(0.0, 10.0)])
    return images[0], intrinsics


def moving_pass(map_dir, height_m: float, frames: int = 50):
    """Return a straight pass over the map's centre (12 m per frame, yaw +-4 deg), intrinsics."""
    return _imagery_frames(map_dir, height_m, [
        (12.0 * (i - frames // 2), 10.0 + 4.0 * math.sin(i)) for i in range(frames)])


def _imagery_frames(map_dir, height_m: float, poses: list[tuple[float, float]],
                    size: tuple[int, int] = (320, 240), hfov_deg: float = 70.0):
    """Return near-nadir views of the map imagery at (east m, yaw deg) poses, intrinsics."""
    import numpy as np
    import rasterio

    from jzi_ros.training.camera import CameraModel, CameraPose, render_view
    from jzi_ros.inference.camera_pose import Intrinsics
    from jzi_ros.maps.imagery import IMAGERY

    camera = CameraModel(size[0], size[1], hfov_deg)
    with rasterio.open(Path(map_dir) / IMAGERY) as ds:
        t = ds.transform
        source = np.moveaxis(ds.read((1, 2, 3)), 0, -1)
    to_local = np.array([[t.a, t.b, t.c], [t.d, t.e, t.f], [0.0, 0.0, 1.0]])
    images = [render_view(source, to_local, camera, CameraPose(east, 0.0, height_m, yaw, 88.0))
              for east, yaw in poses]
    K = camera.K()
    return images, Intrinsics(K[0, 0], K[1, 1], K[0, 2], K[1, 2])


def _bench_refine(args: argparse.Namespace, localizer, map_dir: Path) -> dict:
    from jzi_ros.evaluation.classical import ClassicalLocalizer
    from jzi_ros.inference.bench_refine import bench_refinement
    from jzi_ros.inference.refine import Refiner

    config = refineopts.refine_config(args)
    refiner = Refiner.for_map(map_dir, config, realtime=True)  # as the node runs it
    if refiner is None:
        raise JziError(f"--refine: map {map_dir} has no imagery; rebuild it with `jzi map "
                       "build`")
    image, intrinsics = _imagery_frame(map_dir, config.nominal_height_m)
    sequence = moving_pass(map_dir, config.nominal_height_m)[0] if config.track_frames else None
    try:
        classical = ClassicalLocalizer(map_dir, config, intrinsics)
    except JziError as err:
        print(f"classical registration not timed: {err}")
        classical = None
    try:
        return bench_refinement(localizer, refiner, classical, image, intrinsics, args.frames,
                                args.warmup, sequence)
    finally:
        refiner.close()


def _open_retrieval(args: argparse.Namespace, map_dir: Path) -> dict:
    """
    Load ``--retrieval-model`` for ``map_dir`` per CPU backend ({} without it).

    Torch always; ONNX Runtime too where it is installed and ``--backend`` names it or auto
    (its frame encoder is exported on first use). Bad files fail here, before any timing.
    """
    from jzi_ros.inference.backends.onnxruntime_backend import available_providers
    from jzi_ros.inference.options import localizer_config
    from jzi_ros.inference.retrieval import RetrievalLocalizer

    if args.retrieval_model is None:
        return {}
    names = ["torch"]
    if available_providers() and {"auto", "onnxruntime"} & set(args.backend):
        names.append("onnxruntime")
    out = {}
    for name in names:  # torch with the bench's first --cpu-graph (default jit)
        config = localizer_config(args, backend=name, device="cpu", precision="auto",
                                  beam_width=1, cpu_graph=args.cpu_graph[0], warmup_frames=0)
        localizer = RetrievalLocalizer(map_dir, args.retrieval_model, device="cpu",
                                       progress=False, config=config)
        out[localizer.runtime] = localizer
    return out


def _bench_filter(tree, encode=None, frame=None) -> tuple[list[dict], str, dict]:
    """
    Time the temporal filter on this map and a 65,536-terminal-cell map: rows, table, VO.

    Visual odometry (the filter's motion from the frames) is timed after them, the same way.
    ``encode``: one CPU ground-encoder pass, ``frame``: the frame's own localization; each
    filter frame follows both, as in the node (jzi_ros.inference.bench_filter.bench_filter),
    and the share of the encoder is measured in that run; the default kernel is also timed
    right after the encoder alone (``after_encoder_only``: a harsher order than the node's).
    The default kernel (``FusionConfig.kernel`` auto) is a row per map; where that is the
    compiled one, the numpy reference is timed too (in the row under ``numpy``).
    """
    from jzi_ros.geo import CellTree
    from jzi_ros.inference.bench import bench_frame
    from jzi_ros.inference.bench_filter import bench_filter, bench_visual_odometry
    from jzi_ros.inference.fusion import CellFilter
    from jzi_ros.inference.fusion_config import FusionConfig

    big = CellTree(tree.center_lat, tree.center_lon, 10_000.0, grid=4, depth=4)
    kernel = CellFilter(tree, FusionConfig(particles=16)).kernel  # what "auto" resolves to
    kernels = [kernel] + (["numpy"] if kernel != "numpy" else [])
    out = []
    lines = ["", "| temporal filter (fusion) | kernel | terminal cells | particles | "
             "filter ms wall (med / p95) | filter ms thread CPU | CPU encoder ms wall / CPU "
             "(same run) | filter / encoder, wall / CPU | right after the encoder alone: "
             "filter ms CPU, / encoder CPU |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for label, which in (("this map", tree), ("10 km, 4x4 grid, depth 4", big)):
        timings = {name: bench_filter(which, encode=encode, frame=frame,
                                      config=FusionConfig(kernel=name)) for name in kernels}
        bare = (bench_filter(which, encode=encode, config=FusionConfig(kernel=kernel))
                if frame is not None else None)
        for name, timing in timings.items():
            encoder, share, harsh = "- (no CPU row)", "-", "-"
            if encode is not None:
                encoder = f"{timing['encoder_median']:.2f} / {timing['encoder_cpu_median']:.2f}"
                share = (f"{100 * timing['median'] / timing['encoder_median']:.1f} % / "
                         f"{100 * timing['cpu_median'] / timing['encoder_cpu_median']:.1f} %")
            if bare is not None and name == kernel:
                harsh = (f"{bare['cpu_median']:.3f}, "
                         f"{100 * bare['cpu_median'] / bare['encoder_cpu_median']:.1f} %")
            lines.append(f"| {label} | {name} | {timing['terminal_cells']} | "
                         f"{timing['particles']} | {timing['median']:.3f} / "
                         f"{timing['p95']:.3f} | {timing['cpu_median']:.3f} | {encoder} | "
                         f"{share} | {harsh} |")
        row = {"filter": label, **timings[kernel]}
        if kernel != "numpy":
            row["numpy"] = timings["numpy"]
        if bare is not None:
            row["after_encoder_only"] = bare
        out.append(row)
    if frame is not None:
        lines.append("(each filter frame follows one timed CPU encoder pass and the frame's own "
                     "localization: encoder, beam search, posterior and single-frame Fix, as in "
                     "the node; the last column: right after the encoder alone)")
    elif encode is not None:
        lines.append("(each filter frame follows one CPU encoder pass)")
    visual = bench_visual_odometry(bench_frame(), encode=encode)
    share = ("" if encode is None else
             f", {100 * visual['cpu_median'] / visual['encoder_cpu_median']:.1f} % of the "
             f"encoder's {visual['encoder_cpu_median']:.2f} ms CPU in the same run")
    lines.append(f"visual odometry (fusion.visual_odometry, {visual['pixels']} frames): "
                 f"{visual['median']:.2f} ms wall (p95 {visual['p95']:.2f}), "
                 f"{visual['cpu_median']:.2f} ms thread CPU per frame{share}; "
                 f"{visual['matched']} of {visual['tried']} pairs matched")

    if kernel == "numpy":
        lines.append("(kernel numpy: the compiled one needs Numba, pip install numba)")
    return out, "\n".join(lines), visual


def run(args: argparse.Namespace) -> int:
    from jzi_ros.evaluation.metrics import DEFAULT_RECALL_M
    from jzi_ros.files import write_json
    from jzi_ros.inference.bench import (accuracy, bench_frame, bench_localizer,
                                         bench_retrieval, format_retrieval, format_table,
                                         synthetic_setup, timing_heading)
    from jzi_ros.inference.localizer import Localizer
    from jzi_ros.inference.options import localizer_config

    if args.preset is None and (args.map_dir is None or args.model is None):
        raise JziError("give --map and --model, or --preset NAME")
    if args.retrieval_model is not None and args.preset is not None:
        raise JziError("--retrieval-model needs the map it was trained for: give --map and "
                       "--model instead of --preset")
    if args.refine_track and not args.refine:
        raise JziError("--refine-track times refinement's tracking: add --refine")
    if args.frames < 1 or args.warmup < 0:
        raise JziError(f"--frames must be >= 1 and --warmup >= 0, got {args.frames} / "
                       f"{args.warmup}")
    rows, filter_rows = [], None
    with contextlib.ExitStack() as stack:
        map_dir, model_path = args.map_dir, args.model
        if args.preset is not None:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="jzi-bench-")))
            print(f"building a random {args.preset} model and a synthetic map in {folder} ...")
            map_dir, model_path = synthetic_setup(args.preset, args.grid, args.depth, folder)
        retrieval = _open_retrieval(args, map_dir)
        image = bench_frame()
        samples = None
        for backend, device, precision, beam, graph in _combinations(args):
            label = f"{backend}/{device}/{precision}/beam {beam}"
            if (backend, device) == ("torch", "cpu"):
                label += f"/{graph}"
            config = localizer_config(args, backend=backend, device=device,
                                      precision=precision, beam_width=beam, cpu_graph=graph,
                                      warmup_frames=0)
            started = time.perf_counter()
            try:
                localizer = Localizer.from_paths(map_dir, model_path, config)
                localizer.warmup(1)  # traces/compiles here: start-up, not per frame
            except JziError as err:
                print(f"skipped {label}: {err}")
                continue
            print(f"timing {label} (start-up {time.perf_counter() - started:.1f} s) ...",
                  flush=True)
            row = bench_localizer(localizer, image, args.frames, args.warmup,
                                  paper_way=not args.no_paper_way)
            if args.manifest is not None:
                samples = samples or _samples(args, localizer.tree)
                row.accuracy = accuracy(localizer, samples, DEFAULT_RECALL_M)
            if args.refine:
                row.refine = _bench_refine(args, localizer, map_dir)
            rows.append(row)
            tree = localizer.tree
            if filter_rows is None and device == "cpu" and not args.no_fusion:
                # the filter alternates with the encoder, as in the node
                heading = timing_heading(localizer)
                pixels = localizer.preprocess(image, heading)[None]
                filter_rows = _bench_filter(
                    tree, lambda: localizer.backend.encode(pixels),
                    lambda: localizer.localize_measured(image, heading_deg=heading))
            localizer.close()
    if not rows:
        raise JziError("no backend could be timed (see the 'skipped' lines above)")
    print(format_table(rows))
    if args.refine:
        from jzi_ros.inference.bench_refine import format_refinement

        print("\n".join(format_refinement(rows)))
    if retrieval:
        timings = {}
        for name, localizer in retrieval.items():
            print(f"timing retrieval ({args.retrieval_model}, {name}) ...", flush=True)
            timings[name] = bench_retrieval(localizer, image, args.frames, args.warmup)
            localizer.close()
        print(format_retrieval(timings, rows))
        for row in rows:
            row.retrieval = timings
    if filter_rows is None and not args.no_fusion:  # no CPU row: the filter alone
        filter_rows = _bench_filter(tree)
    if filter_rows is not None:
        print(filter_rows[1])
        for row in rows:
            row.fusion_filter, row.visual_odometry = filter_rows[0], filter_rows[2]
    if args.json:
        write_json(args.json, [row.to_dict() for row in rows])
        print(f"wrote {args.json}")
    return 0
