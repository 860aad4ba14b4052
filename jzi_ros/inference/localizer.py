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
The Localizer: one camera image in, one :class:`Fix` out.

Built once from a map directory and a checkpoint (checked against each other: grid, depth,
embedding width, encoder hash), it keeps the map's embedding table on the backend's device.
Per frame: image checks/conversion -> preprocessing -> ground encoder -> fixed-length beam
search over the cached view table -> posterior, position, covariance, confidence -> Fix.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
import logging
import math
from pathlib import Path
import time
from typing import Any, Sequence

import numpy as np

from jzi_ros.config import from_mapping
from jzi_ros.errors import BadImageError, JziError
from jzi_ros.inference.backends import Backend, BACKENDS, BackendSpec, create_backend
from jzi_ros.inference.backends.base import CPU_GRAPHS
from jzi_ros.inference.calibration import Calibration, resolve_settings
from jzi_ros.inference.fix import Fix, FixStatus, Hypothesis
from jzi_ros.inference.image import as_rgb_uint8, degenerate_reason
from jzi_ros.inference.posterior import (apply_scale_and_floor, enu_covariance, POSITION_MODES,
                                         Posterior, posterior_from_beam, raw_estimate)
from jzi_ros.threads import check_threads, DEFAULT_THREADS, set_threads

LOG = logging.getLogger(__name__)

__all__ = ["BadImageError", "DEFAULT_BEAM_WIDTH", "Localizer", "LocalizerConfig"]

# Chosen by measurement (`jzi bench --manifest ... --beam 1 2 4 8 16`, docs/benchmarks.md):
# on the demo setup beam 4 costs ~1 ms more per frame than greedy (beam 16: ~6 ms), and its
# spread gives the covariance several hypotheses (mean NEES 1.9 after calibration vs 22 for
# greedy, whose covariance is only the within-cell term). Accuracy did not separate the widths
# there (the demo model of that run was near chance): re-measure with a trained model.
DEFAULT_BEAM_WIDTH = 4


@dataclass
class LocalizerConfig:
    """How the Localizer decodes, estimates and runs (ROS parameters map 1:1 onto it)."""

    beam_width: int = DEFAULT_BEAM_WIDTH  # 1 = the paper's greedy decoding
    position: str = "top"  # "top": best cell's centre (paper); "mean": beam-weighted mean
    # below it the result is NO_FIX: None = the gate calibrated into the checkpoint (0 if it
    # has none), a number overrides it, 0 disables it
    confidence_threshold: float | None = None
    sigma_floor_m: float = 5.0  # minimum 1-sigma of the horizontal covariance
    covariance_scale: float | None = None  # None: the checkpoint's calibration, else 1.0
    altitude_m: float = 0.0  # reported altitude (the policy does not estimate it)
    altitude_sigma_m: float = 100.0  # 1-sigma of that altitude (Up variance = this^2)
    backend: str = "auto"  # auto, tensorrt, onnxruntime, torch
    device: str = "auto"  # auto, cpu, cuda, cuda:N
    precision: str = "auto"  # auto (fp16 on CUDA, fp32 on CPU), fp32, fp16
    max_image_side: int = 4096  # larger images are subsampled first (bounded time/memory)
    export_dir: str | None = None  # ONNX/engine folder; default: the user cache (export.py)
    force_engine_update: bool = False  # rebuild TensorRT engines even if cached
    max_workspace_size: int = 1 << 30  # TensorRT builder workspace, bytes
    cuda_graph: bool = True  # torch on CUDA: capture encoder/decoder in CUDA graphs
    # torch on CPU (backends/cpu_graph.py): "jit" traces + freezes encoder and beam search
    # (same results, ~1.5x faster, a second at start-up), "aoti" compiles them ahead of time
    # (~1.6x faster than jit, same results; compiled once, ~15 s a graph, then cached), "compile"
    # torch.compile, "eager" neither
    cpu_graph: str = "jit"
    warmup_frames: int = 1  # grey frames run by from_paths so the first real one is fast
    threads: int = DEFAULT_THREADS  # torch/OpenCV CPU threads (process-wide); 0: all cores

    def __post_init__(self) -> None:
        if int(self.beam_width) != self.beam_width or self.beam_width < 1:
            raise JziError(f"localizer.beam_width must be an integer >= 1, "
                           f"got {self.beam_width!r}")
        if self.position not in POSITION_MODES:
            raise JziError(f"localizer.position must be one of {POSITION_MODES}, "
                           f"got {self.position!r}")
        if self.confidence_threshold is not None and not (
                0.0 <= self.confidence_threshold <= 1.0):
            raise JziError(f"localizer.confidence_threshold must be null (the checkpoint's "
                           f"gate) or in [0, 1], got {self.confidence_threshold!r}")
        for name in ("sigma_floor_m", "altitude_sigma_m"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise JziError(f"localizer.{name} must be a finite number > 0, got {value!r}")
        if self.covariance_scale is not None and not (
                math.isfinite(self.covariance_scale) and self.covariance_scale > 0):
            raise JziError(f"localizer.covariance_scale must be null or > 0, "
                           f"got {self.covariance_scale!r}")
        if not math.isfinite(self.altitude_m):
            raise JziError(f"localizer.altitude_m must be finite, got {self.altitude_m!r}")
        if self.backend not in BACKENDS:
            raise JziError(f"localizer.backend must be one of {BACKENDS}, got {self.backend!r}")
        check_threads(self.threads, "localizer.threads")
        if self.cpu_graph not in CPU_GRAPHS:
            raise JziError(f"localizer.cpu_graph must be one of {CPU_GRAPHS}, "
                           f"got {self.cpu_graph!r}")
        if self.max_image_side < 16:
            raise JziError(f"localizer.max_image_side must be >= 16, "
                           f"got {self.max_image_side!r}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LocalizerConfig":
        return from_mapping(cls, data, "localizer config")


def _check_model_against_map(header: dict, pyramid, model_path: Path) -> None:
    from jzi_ros.model.config import ModelConfig

    config = ModelConfig.from_dict(header["config"])
    tree = pyramid.tree
    if (config.grid, config.depth) != (tree.grid, tree.depth):
        raise JziError(f"model {model_path} was trained for a {config.grid}x{config.grid} grid "
                       f"with depth {config.depth}, but map {pyramid.path} has grid {tree.grid} "
                       f"and depth {tree.depth}; use a model trained on this map's tree")


class Localizer:
    """Image -> Fix over one map with one model. Not thread-safe: one caller at a time."""

    def __init__(self, pyramid, model_path: str | Path, config: LocalizerConfig,
                 backend: Backend, model_config, metadata: dict) -> None:
        self.pyramid = pyramid
        self.tree = pyramid.tree
        self.model_path = Path(model_path)
        self.backend = backend
        self.backend_name = backend.name
        self.model_config = model_config
        self.calibration = Calibration.from_metadata(metadata)
        self.config = config  # resolves the covariance scale and the gate (see the setter)
        center = self.tree.cell_center(())
        self._no_fix_at = (center[0], center[1])
        self._no_fix_variance = self.tree.size_m ** 2 / 12.0

    @property
    def config(self) -> LocalizerConfig:
        """How this Localizer runs; assigning a new one (a runtime change) re-resolves the rest."""
        return self._config

    @config.setter
    def config(self, config: LocalizerConfig) -> None:
        from jzi_ros.inference.decode import effective_beam_width

        beam = effective_beam_width(config.beam_width, self.tree.grid, self.tree.depth)
        self.covariance_scale, self.confidence_threshold = resolve_settings(
            self.calibration, config, beam, config.position, self.model_path)
        self._config = config

    @classmethod
    def from_paths(cls, map_dir: str | Path, model_path: str | Path,
                   config: LocalizerConfig | None = None) -> "Localizer":
        """Open the map, check the model against it, load the embeddings, build a backend."""
        from jzi_ros.maps.pyramid import MapPyramid
        from jzi_ros.model.checkpoint import read_header
        from jzi_ros.model.config import ModelConfig

        config = config or LocalizerConfig()
        set_threads(config.threads)
        model_path = Path(model_path)
        pyramid = MapPyramid.open(map_dir)
        header = read_header(model_path)
        _check_model_against_map(header, pyramid, model_path)
        model_config = ModelConfig.from_dict(header["config"])
        table = pyramid.load_embeddings(header["encoder_hash"])
        width = model_config.encoder.hidden_size
        if table.shape[1] != width:
            raise JziError(f"embeddings in {pyramid.embeddings_path} are {table.shape[1]} wide, "
                           f"model {model_path} encodes {width}-wide vectors; run `jzi map "
                           f"embed {pyramid.path} --model {model_path}`")
        if not np.all(np.isfinite(table)):
            raise JziError(f"embeddings in {pyramid.embeddings_path} contain NaN/inf; re-embed")
        spec = BackendSpec(model_path=str(model_path), view_table=table,
                           grid=pyramid.tree.grid, depth=pyramid.tree.depth,
                           beam_width=config.beam_width, export_dir=config.export_dir,
                           force_engine_update=config.force_engine_update,
                           max_workspace_size=config.max_workspace_size,
                           cuda_graph=config.cuda_graph, cpu_graph=config.cpu_graph,
                           threads=config.threads)
        backend = create_backend(config.backend, spec, config.device, config.precision)
        localizer = cls(pyramid, model_path, config, backend, model_config, header["metadata"])
        localizer.warmup(config.warmup_frames)
        return localizer

    @property
    def searched_beam_width(self) -> int:
        """Return the beam width actually searched (clamped to the number of terminal cells)."""
        return backend_beam(self)

    @property
    def position_mode(self) -> str:
        """Return how the published position is chosen (``config.position``: top or mean)."""
        return self.config.position

    # --- per frame ---------------------------------------------------------------------------
    def preprocess(self, image_rgb: np.ndarray, heading_deg: float | None = None) -> np.ndarray:
        """
        Checked/converted image -> float32 ``[n_crops, 3, S, S]``; BadImageError.

        ``heading_deg`` (the frame's heading, degrees from north) is required by north-up
        models (JziError without it) and ignored by the others.
        """
        from jzi_ros.model.preprocess import ground_pixels

        image = as_rgb_uint8(image_rgb, self.config.max_image_side)
        try:
            return ground_pixels(image, self.model_config, heading_deg).numpy()
        except JziError as err:
            if self.model_config.heading == "north-up" and heading_deg is None:
                raise JziError(f"model {self.model_path.name}: {err}") from None
            raise

    def posteriors(self, images: Sequence[np.ndarray],
                   headings: Sequence[float | None] | None = None, steps_out: list | None = None,
                   seeds=None) -> tuple[list[Posterior | None], dict[str, float]]:
        """
        Return beam posteriors for a batch of images and the batch's stage timings in ms.

        A posterior is None where decoding gave non-finite values. BadImageError for an unusable
        image. With a list as ``steps_out`` it receives one ``decode.BeamSteps`` per frame, or
        None per frame where the backend gives only the final beam. ``seeds``
        (``decode.Seeds``, for every frame of the batch) adds a seeded track to those steps
        where the backend supports it; the posteriors stay the model's own beam.
        """
        timings: dict[str, float] = {}
        start = time.perf_counter()
        headings = [None] * len(images) if headings is None else list(headings)
        pixels = np.stack([self.preprocess(image, heading)
                           for image, heading in zip(images, headings)])
        mark = time.perf_counter()
        timings["preprocess"] = (mark - start) * 1e3
        ground = self.backend.encode(pixels)
        now = time.perf_counter()
        timings["encode"], mark = (now - mark) * 1e3, now
        detailed = None
        if steps_out is not None:
            detailed = (self.backend.decode_steps(ground) if seeds is None else
                        self.backend.decode_steps(ground, np.tile(seeds.cells, (len(ground), 1)),
                                                  seeds.level))
        if detailed is None:
            paths, log_probs = self.backend.decode(ground)
            if steps_out is not None:
                steps_out.extend([None] * len(images))
        else:
            paths, log_probs, steps = detailed
            steps_out.extend(steps)
        now = time.perf_counter()
        timings["decode"], mark = (now - mark) * 1e3, now
        out: list[Posterior | None] = []
        for frame in range(len(images)):
            if np.all(np.isfinite(log_probs[frame])) and np.all(np.isfinite(ground[frame])):
                out.append(posterior_from_beam(self.tree, paths[frame], log_probs[frame]))
            else:
                out.append(None)
        timings["posterior"] = (time.perf_counter() - mark) * 1e3
        return out, timings

    def localize(self, image_rgb: np.ndarray, heading_deg: float | None = None) -> Fix:
        """
        Localize one image: image -> Fix.

        BadImageError for an unusable array; NO_FIX (never NaN) for a frame that decodes to nothing
        usable or falls below the confidence threshold. ``heading_deg``: see :meth:`preprocess`.
        """
        return self.localize_batch([image_rgb], [heading_deg])[0]

    def localize_batch(self, images: Sequence[np.ndarray],
                       headings: Sequence[float | None] | None = None) -> list[Fix]:
        """Several images in one backend call (replay, calibration); same rules as localize."""
        start = time.perf_counter()
        images = [as_rgb_uint8(image, self.config.max_image_side) for image in images]
        reasons = [degenerate_reason(image) for image in images]
        usable = [image for image, reason in zip(images, reasons) if reason is None]
        headings = [None] * len(images) if headings is None else list(headings)
        try:
            posteriors, timings = (self.posteriors(usable, [
                h for h, reason in zip(headings, reasons) if reason is None])
                if usable else ([], {}))
        except RuntimeError as err:  # a runtime failure must not take the robot down
            LOG.exception("inference failed")
            reason = f"inference failed: {str(err).splitlines()[0]}"
            return [self._no_fix(reason, {}) for _ in images]
        answers = iter(posteriors)
        fixes = []
        for reason in reasons:
            mark = time.perf_counter()
            posterior = next(answers) if reason is None else None
            if reason is not None:  # a frame nothing can be placed from: no inference
                fix = self._no_fix(reason, {})
            elif posterior is None:
                fix = self._no_fix("decoder produced non-finite values", {})
            else:
                fix = self.fix_from_posterior(posterior, {})
            now = time.perf_counter()
            fix_timings = dict(timings)
            fix_timings["posterior"] = (fix_timings.get("posterior", 0.0)
                                        + (now - mark) * 1e3)  # + building this frame's Fix
            fix_timings["total"] = (now - start) * 1e3
            fixes.append(dataclasses.replace(fix, timings_ms=fix_timings))
        return fixes

    def localize_measured(self, image_rgb: np.ndarray, heading_deg: float | None = None,
                          seeds=None):
        """
        Localize one image and return ``(Fix, fusion.Measurement or None)``.

        The measurement is what the temporal filter folds in: every step's child
        probabilities where the backend gives them, else the final beam. None when the frame
        decoded to nothing usable. ``seeds`` (``decode.Seeds``, e.g. from
        ``CellFilter.seed_cells``): also expand the prefixes the filter's prior supports
        (the prior-seeded zoom); the Fix stays the model's own beam, only the measurement
        gains the seeded prefixes (torch backend; the exported graphs take no seeds and warn).
        """
        from jzi_ros.inference.measurement import Measurement

        start = time.perf_counter()
        steps: list = []
        try:
            (posterior,), timings = self.posteriors([image_rgb], [heading_deg], steps_out=steps,
                                                    seeds=seeds)
        except RuntimeError as err:
            LOG.exception("inference failed")
            return self._no_fix(f"inference failed: {str(err).splitlines()[0]}", {}), None
        if posterior is None:
            return self._no_fix("decoder produced non-finite values", timings), None
        mark = time.perf_counter()
        fix = self.fix_from_posterior(posterior, {})
        measurement = (Measurement.from_steps(self.tree, steps[0]) if steps[0] is not None
                       else Measurement.from_beam(self.tree, posterior.paths,
                                                  posterior.log_probs))
        now = time.perf_counter()
        timings["posterior"] += (now - mark) * 1e3
        timings["total"] = (now - start) * 1e3
        return dataclasses.replace(fix, timings_ms=timings), measurement

    def estimate(self, posterior: Posterior) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(position [2], calibrated covariance [2, 2], raw covariance [2, 2]) E/N metres."""
        position, raw = raw_estimate(posterior, self.config.position)
        cov = apply_scale_and_floor(raw, self.covariance_scale, self.config.sigma_floor_m)
        return position, cov, raw

    def raw_estimate(self, image_rgb: np.ndarray, heading_deg: float | None = None,
                     with_confidence: bool = False) -> tuple:
        """
        Return (position [2], uncalibrated covariance [2, 2]) in metres E/N of the root.

        This is what calibration fits the covariance scale on; ``with_confidence`` adds the
        frame's confidence (for the gate) as a third element. JziError if the frame decodes
        to nothing.
        """
        (posterior,), _ = self.posteriors([image_rgb], [heading_deg])
        if posterior is None:
            raise JziError("decoder produced non-finite values for this frame")
        position, _, raw = self.estimate(posterior)
        return (position, raw, posterior.confidence) if with_confidence else (position, raw)

    def warmup(self, frames: int = 2) -> None:
        """
        Run a few grey frames.

        Lazy init, CUDA graph capture and autotuning happen here, not on the first camera frame.
        """
        # at least one frame through each search (a graph may take a while to build)
        for frame in range(max(frames, 2) if frames else 0):
            # The first one runs the search that returns each step (temporal fusion).
            self.posteriors([self._grey_frame()], [0.0], steps_out=[] if frame == 0 else None)

    def _grey_frame(self) -> np.ndarray:
        """Return a grey frame to warm graphs up with (not localize(): it skips uniform frames)."""
        size = self.model_config.encoder.image_size
        return np.full((size, 2 * size, 3), 128, np.uint8)

    def warm_seeded(self, fix_sigma_m: float) -> None:
        """
        Build the prior-seeded search now, not on the first frame the filter is confident on.

        Fusion with ``seed_beam`` calls this at start-up: with ``cpu_graph`` aoti a new graph
        compiles for tens of seconds, which must not stall a robot in flight. The seeds' shape
        (:data:`seeding.SEED_COUNT` cells at the level ``fix_sigma_m`` picks) is all the graph
        depends on. Backends other than torch take no seeds: nothing to build.
        """
        from jzi_ros.inference.decode import Seeds
        from jzi_ros.inference.seeding import SEED_COUNT, seed_level

        if self.backend.name != "torch" or self.tree.depth < 2:
            return
        seeds = Seeds(seed_level(self.tree, fix_sigma_m), np.full(SEED_COUNT, -1, np.int64))
        self.posteriors([self._grey_frame()], [0.0], steps_out=[], seeds=seeds)

    def fix_from_posterior(self, posterior: Posterior, timings: dict[str, float]) -> Fix:
        position, cov, _ = self.estimate(posterior)
        # one projection call for the estimate and every hypothesis (pyproj has call overhead)
        points = np.vstack([position[None], posterior.centers_en])
        all_lats, all_lons = self.tree.to_latlon(points[:, 0], points[:, 1])
        lat, lon = float(all_lats[0]), float(all_lons[0])
        lats, lons = np.asarray(all_lats)[1:], np.asarray(all_lons)[1:]
        hypotheses = tuple(
            Hypothesis(tuple(int(a) for a in path), float(p), float(lp), float(e), float(n),
                       float(la), float(lo))
            for path, p, lp, (e, n), la, lo in zip(
                posterior.paths, posterior.probs, posterior.log_probs, posterior.centers_en,
                lats, lons))
        confidence = posterior.confidence
        if confidence < self.confidence_threshold:
            return Fix.no_fix(f"confidence {confidence:.3g} below threshold "
                              f"{self.confidence_threshold:.3g}", lat, lon,
                              self.config.altitude_m, self._no_fix_variance, timings,
                              hypotheses, confidence, float(position[0]), float(position[1]))
        return Fix(FixStatus.FIX, lat, lon, self.config.altitude_m,
                   enu_covariance(cov, self.config.altitude_sigma_m), confidence,
                   float(position[0]), float(position[1]), hypotheses, "", timings)

    def _no_fix(self, reason: str, timings: dict[str, float]) -> Fix:
        return Fix.no_fix(reason, self._no_fix_at[0], self._no_fix_at[1],
                          self.config.altitude_m, self._no_fix_variance, timings)

    def close(self) -> None:
        self.backend.close()


def backend_beam(localizer: Localizer) -> int:
    """Return the beam width actually searched (clamped to the number of terminal cells)."""
    from jzi_ros.inference.decode import effective_beam_width

    tree = localizer.tree
    return effective_beam_width(localizer.config.beam_width, tree.grid, tree.depth)
