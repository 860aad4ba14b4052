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
The retrieval baseline as a localizer: a flat nearest-neighbour search over the map's views.

What the paper compares zooming against, measured on the user's own map and frames: every view
of the finest view level (the cells of side ``size / K^(D-1)``) is embedded once at start-up
with the retrieval model's view head; a frame is preprocessed exactly as the zoom preprocesses
its ground image (:func:`jzi_ros.model.preprocess.ground_pixels`: heading policy, crops,
normalisation), embedded with the frame head and compared with every view by cosine
similarity. The fix is the centre of the most similar view's cell; the top-k cells are its
hypotheses. It has the Localizer's replay interface (``tree``, ``pyramid``,
``backend_name``, ``localize``, ``close``), so ``jzi evaluate`` and ``jzi replay`` score it
with ``--method retrieval`` like the zoom.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
import time

import numpy as np
import torch

from jzi_ros.errors import JziError
from jzi_ros.inference.backends.torch_backend import torch_device
from jzi_ros.inference.calibration import Calibration, resolve_settings
from jzi_ros.inference.fix import Fix, FixStatus, Hypothesis
from jzi_ros.inference.image import as_rgb_uint8, degenerate_reason
from jzi_ros.inference.localizer import LocalizerConfig
from jzi_ros.inference.measurement import Measurement
from jzi_ros.inference.posterior import apply_scale_and_floor
from jzi_ros.maps.pyramid import MapPyramid
from jzi_ros.model.preprocess import ground_pixels
from jzi_ros.model.retrieval import embed_view_rows, finest_view_rows, load_retrieval

LOG = logging.getLogger(__name__)
PROGRESS_ABOVE_VIEWS = 512  # show a progress bar when embedding more views than this
NO_BEAM_TO_SEED = ("retrieval has no beam to seed: turn the prior-seeded zoom "
                   "(fusion.seed_beam) off")
# the filter's measurement keeps the most probable views holding this much of the softmax
# (at most MAX_MEASURED_VIEWS of them); the rest is uniform background. Every view as its own
# piece made the filter's frame grow with the map: 4,096 views (the paper's map at 156 m)
# cost 0.9 ms to build and 1.8 ms to filter per frame, against 0.13 and 0.43 ms for 256
MEASURED_MASS = 0.999
MAX_MEASURED_VIEWS = 256


def top_views(scores: np.ndarray, k: int) -> np.ndarray:
    """Return the indices of the ``k`` highest ``scores``, best first (a partition, not a sort)."""
    scores = np.asarray(scores)
    top = np.argpartition(-scores, k - 1)[:k] if len(scores) > k else np.arange(len(scores))
    return top[np.argsort(-scores[top], kind="stable")]


def measured_views(probabilities: np.ndarray, mass: float = MEASURED_MASS,
                   most: int = MAX_MEASURED_VIEWS) -> np.ndarray:
    """Return the indices of the most probable views that hold ``mass`` (at most ``most``)."""
    p = np.asarray(probabilities, np.float64)
    top = top_views(p, most)
    count = int(np.searchsorted(np.cumsum(p[top]), mass)) + 1
    return top[:count]


class RetrievalLocalizer:
    """Image -> Fix at the centre of the finest-level map view nearest in embedding space."""

    def __init__(self, map_dir: str | Path, checkpoint: str | Path, device: str | None = "cpu",
                 top_k: int = 5, confidence_threshold: float | None = None,
                 batch_size: int = 64, progress: bool = True,
                 config: LocalizerConfig | None = None) -> None:
        """
        Embed the map's finest views with ``checkpoint``'s view head.

        ``config`` (the node's settings as a LocalizerConfig): its confidence gate and
        covariance scale (None: the checkpoint's calibration, ``jzi localize --calibrate``;
        without one no gate and scale 1), horizontal sigma floor, altitude and Up sigma apply
        to every fix; without it ``confidence_threshold`` (None: the calibrated gate) and the
        defaults do.
        """
        if not isinstance(top_k, int) or top_k < 1:
            raise JziError(f"retrieval: top_k must be an integer >= 1, got {top_k!r}")
        if confidence_threshold is not None and not 0.0 <= confidence_threshold <= 1.0:
            raise JziError(f"retrieval: confidence_threshold must be in [0, 1], "
                           f"got {confidence_threshold!r}")
        self.model_path = Path(checkpoint)
        self.top_k = top_k
        self.pyramid = MapPyramid.open(map_dir)
        self.tree = self.pyramid.tree
        if device in (None, "auto"):
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch_device(device)
        self.model, self.metadata = load_retrieval(checkpoint, self.device)
        self.calibration = Calibration.from_metadata(self.metadata)
        self.config = config or LocalizerConfig(confidence_threshold=confidence_threshold)
        self.model_config = self.model.model_config  # heading policy, crops: the zoom's rules
        trained = self.metadata.get("tree")
        if trained and trained != self.tree.to_dict():
            LOG.warning("retrieval model %s was trained on another cell tree (%s) than map "
                        "%s's; its cells may not be the size it learnt", checkpoint, trained,
                        map_dir)
        self.runtime, self._encode_frame = self._frame_encoder(self.config)
        self.backend_name = f"retrieval-{self.runtime}-{self.device.type}"
        self.level = self.tree.depth - 1
        self.rows = finest_view_rows(self.tree)
        self.level_index = self.rows - self.tree.level_offsets[self.level]  # within the level
        self.paths = [self.tree.path_of_view(int(r)) for r in self.rows]
        self.centres_en = self.tree.cell_centers_local(np.array(self.paths, np.int64).reshape(
            len(self.paths), self.level))
        side = self.tree.cell_side(self.level)
        self.cell_variance_m2 = side ** 2 / 12.0  # a uniform position inside one cell
        began = time.perf_counter()
        self.table = embed_view_rows(
            self.model, self.pyramid, self.rows, batch_size, self.device,
            progress and len(self.rows) > PROGRESS_ABOVE_VIEWS, "retrieval: embedding map views")
        LOG.info("retrieval: embedded %d map views of %.1f m in %.1f s", len(self.rows), side,
                 time.perf_counter() - began)
        self._no_fix_at = self.tree.cell_center(())
        self._no_fix_variance = self.tree.size_m ** 2 / 12.0
        if self.config.warmup_frames:  # traces / sessions warm here, not on a camera frame
            encoder = self.model_config.encoder
            with torch.no_grad():
                self._encode_frame(torch.zeros(1, self.model_config.n_crops, 3,
                                               encoder.image_size, encoder.image_size))

    def _frame_encoder(self, config: LocalizerConfig):
        """
        Return ``(backend name, pixels [1, n_crops, 3, S, S] -> [1, E] tensor)``.

        ``config.backend``: ``torch`` (on a CPU traced and frozen per ``config.cpu_graph``, as
        the zoom's encoder: ``torch-jit``); ``onnxruntime`` (the frame encoder exported on
        first use, :mod:`jzi_ros.inference.retrieval_export`); ``auto``, ONNX Runtime when an
        export of this checkpoint already exists and ONNX Runtime runs on this device, else
        torch (as for the zoom, no export is started behind the user's back: ``jzi export
        --retrieval-model R``). TensorRT has no retrieval engine: refused in one line.
        """
        from jzi_ros.inference.backends.onnxruntime_backend import available_providers
        from jzi_ros.inference.retrieval_export import (export_retrieval, OnnxFrameEncoder,
                                                        up_to_date_export)

        name, onnx_path = config.backend, None
        if name == "tensorrt":
            raise JziError("retrieval runs on onnxruntime or torch (there is no TensorRT "
                           "engine of the retrieval model): set backend to auto, onnxruntime "
                           "or torch")
        if name == "auto":
            provider = ("CUDAExecutionProvider" if self.device.type == "cuda"
                        else "CPUExecutionProvider")
            if provider in available_providers():
                onnx_path = up_to_date_export(self.model_path, config.export_dir)
            name = "torch" if onnx_path is None else "onnxruntime"
        if name == "onnxruntime":
            session = OnnxFrameEncoder(
                onnx_path or export_retrieval(self.model_path, config.export_dir),
                str(self.device), config.threads)
            return name, lambda pixels: torch.from_numpy(session(pixels.numpy())).to(
                self.device)
        if self.device.type == "cpu" and config.cpu_graph != "eager":
            from jzi_ros.inference.backends.cpu_graph import aoti_cache_root, CpuGraph
            from jzi_ros.inference.export import EncoderGraph
            from jzi_ros.inference.retrieval_export import default_retrieval_export_dir

            # traced and frozen (or compiled) per input shape, as the zoom's encoder on a CPU;
            # an aoti package is keyed by the checkpoint's export key (from its header)
            graph = CpuGraph(EncoderGraph(self.model, "encode_frames"), config.cpu_graph,
                             "retrieval frame encoder",
                             default_retrieval_export_dir(self.model_path).name
                             if config.cpu_graph == "aoti" else None,
                             aoti_cache_root(config.export_dir), freeze=True)
            return f"torch-{config.cpu_graph}", graph
        return "torch", lambda pixels: self.model.encode_frames(pixels.to(self.device)).float()

    @property
    def config(self) -> LocalizerConfig:
        """How it runs; assigning a new one (the node may) re-resolves the scale and the gate."""
        return self._config

    @config.setter
    def config(self, config: LocalizerConfig) -> None:
        self.covariance_scale, self._confidence_threshold = resolve_settings(
            self.calibration, config, self.searched_beam_width, self.position_mode,
            self.model_path)
        self._config = config

    @property
    def confidence_threshold(self) -> float:
        """Return the gate in force: ``config``'s, else the calibrated one, else 0 (none)."""
        return self._confidence_threshold

    @property
    def searched_beam_width(self) -> int:
        """Return how many views a fix keeps as hypotheses (what its covariance spreads over)."""
        return self.top_k

    @property
    def position_mode(self) -> str:
        """Return how the published position is chosen: always the best view's cell centre."""
        return "top"

    @property
    def nbytes(self) -> int:
        """Return the view table's size in memory."""
        return int(self.table.numel() * self.table.element_size())

    def _no_fix(self, reason: str, timings: dict[str, float]) -> Fix:
        return Fix.no_fix(f"retrieval: {reason}", self._no_fix_at[0], self._no_fix_at[1],
                          self.config.altitude_m, self._no_fix_variance, timings)

    def localize(self, image_rgb: np.ndarray, intrinsics=None, heading_deg: float | None = None,
                 **_) -> Fix:
        """Localize one frame (``intrinsics`` is accepted for the interface and unused)."""
        return self._localize(image_rgb, heading_deg)[0]

    def warm_seeded(self, fix_sigma_m: float) -> None:
        """Refuse the prior-seeded zoom (``Localizer.warm_seeded``): retrieval has no beam."""
        raise JziError(NO_BEAM_TO_SEED)

    def localize_measured(self, image_rgb: np.ndarray, heading_deg: float | None = None,
                          seeds=None, **_) -> tuple[Fix, Measurement | None]:
        """
        Return the fix and the softmax over every view as a temporal filter's measurement.

        The most probable finest-level views (:func:`measured_views`: 99.9 % of the mass, at
        most 256) carry their probabilities over their cells (``Measurement.from_cells``), the
        rest of the mass is uniform over the map; None where the frame gave no usable
        similarities (the fix is then NO_FIX).
        """
        if seeds is not None:
            raise JziError(NO_BEAM_TO_SEED)
        fix, log_probs = self._localize(image_rgb, heading_deg)
        if log_probs is None:
            return fix, None
        probabilities = np.exp(log_probs)
        keep = measured_views(probabilities)
        return fix, Measurement.from_cells(self.tree, self.level, self.level_index[keep],
                                           probabilities[keep])

    def raw_estimate(self, image_rgb: np.ndarray, heading_deg: float | None = None,
                     with_confidence: bool = False) -> tuple:
        """
        Return (position [2], uncalibrated covariance [2, 2]) in metres E/N of the root.

        What ``jzi localize --calibrate`` fits the covariance scale on (as the zoom's
        ``Localizer.raw_estimate``); ``with_confidence`` adds the best view's softmax
        probability (for the gate). JziError for a frame that gives no similarities.
        """
        found = self._search(as_rgb_uint8(image_rgb), heading_deg, time.perf_counter())
        if isinstance(found, str):
            raise JziError(f"retrieval: {found}")
        log_probs, top, _ = found
        _, centres, raw = self._spread(top, log_probs[top])
        out = (centres[0].copy(), raw)
        return out + (float(math.exp(log_probs[top[0]])),) if with_confidence else out

    @torch.no_grad()
    def _search(self, image: np.ndarray, heading_deg: float | None, start: float):
        """Return ``(log-probability of every view, top-k indices, timings)``, or why not."""
        reason = degenerate_reason(image)
        if reason is not None:
            return reason
        pixels = ground_pixels(image, self.model_config, heading_deg)
        t_pre = time.perf_counter()
        frame = self._encode_frame(pixels[None])
        t_enc = time.perf_counter()
        similarity = (frame @ self.table.T)[0]
        logits = self.model.scale().float() * similarity
        log_probs = torch.log_softmax(logits, dim=0).cpu().numpy().astype(np.float64)
        if not np.all(np.isfinite(log_probs)):
            return "the model produced non-finite similarities"
        top = top_views(log_probs, self.top_k)
        end = time.perf_counter()
        timings = {"preprocess": (t_pre - start) * 1e3, "encode": (t_enc - t_pre) * 1e3,
                   "search": (end - t_enc) * 1e3, "total": (end - start) * 1e3}
        return log_probs, top, timings

    def _localize(self, image_rgb: np.ndarray, heading_deg: float | None
                  ) -> tuple[Fix, np.ndarray | None]:
        """Return the fix and every view's log-probability (float64; None with a NO_FIX)."""
        start = time.perf_counter()
        found = self._search(as_rgb_uint8(image_rgb), heading_deg, start)
        if isinstance(found, str):
            return self._no_fix(found, {"total": (time.perf_counter() - start) * 1e3}), None
        log_probs, top, timings = found
        return self._fix(top, log_probs[top], timings), log_probs

    def _spread(self, top: np.ndarray, top_log: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """
        Return the top views' weights, their cell centres and the raw covariance [2, 2].

        The raw covariance is the candidates' probability-weighted spread around the best
        view's cell plus the uniform variance inside one cell: the shape calibration scales.
        """
        weights = np.exp(top_log - top_log.max())
        weights /= weights.sum()  # normalised over the returned hypotheses
        centres = self.centres_en[top]
        offsets = centres - centres[0]
        raw = (weights[:, None, None] * offsets[:, :, None] * offsets[:, None, :]).sum(0)
        return weights, centres, raw + np.eye(2) * self.cell_variance_m2

    def _fix(self, top: np.ndarray, top_log: np.ndarray, timings: dict[str, float]) -> Fix:
        weights, centres, raw = self._spread(top, top_log)
        best_e, best_n = (float(v) for v in centres[0])
        # scaled by the calibration, floored: never below the floor, never NaN
        cov = np.zeros((3, 3))
        cov[:2, :2] = apply_scale_and_floor(raw, self.covariance_scale,
                                            self.config.sigma_floor_m)
        cov[2, 2] = self.config.altitude_sigma_m ** 2
        hypotheses = []
        for index, weight, log_prob, (east, north) in zip(top, weights, top_log, centres):
            lat, lon = self.tree.to_latlon(float(east), float(north))
            hypotheses.append(Hypothesis(tuple(self.paths[index]), float(weight),
                                         float(log_prob), float(east), float(north),
                                         float(lat), float(lon)))
        confidence = float(math.exp(top_log[0]))  # softmax over every view of the level
        lat, lon = hypotheses[0].latitude, hypotheses[0].longitude
        if confidence < self.confidence_threshold:
            return Fix.no_fix(f"retrieval: confidence {confidence:.4f} below the threshold "
                              f"{self.confidence_threshold:g}", lat, lon, self.config.altitude_m,
                              self._no_fix_variance, timings, hypotheses, confidence,
                              best_e, best_n)
        return Fix(FixStatus.FIX, lat, lon, self.config.altitude_m, cov, confidence, best_e,
                   best_n, tuple(hypotheses), "", timings)

    def close(self) -> None:
        pass
