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
Latency benchmark: ground encoder alone, a full Localizer frame, and the paper's way.

- ``encoder_ms``: the backend's ground encoder on one preprocessed frame (all crops).
- ``frame_ms``: ``Localizer.localize`` end to end (image checks, preprocessing, encoder,
  D-step cached beam search over the map's embedding table, posterior, covariance, Fix).
- ``measured_ms`` / ``seeded_ms``: the frame as temporal fusion runs it
  (``Localizer.localize_measured``: the beam search also returns every step), without and with
  the prior-seeded zoom (9 seeds one level above the terminal cells); torch backend only.
- ``paper_way_ms``: the same frame decoded as the paper's evaluation code does it (greedy):
  at every step the current map view is read and re-encoded with the encoder, and the decoder
  is re-run on the whole prefix without a KV cache. Only for the torch backend (it needs the
  view encoder as a module).

Each figure is the median and 95th percentile over ``frames`` runs after ``warmup`` runs;
CUDA work is synchronised before a clock is read. With one CPU thread, ``cpu_ms`` also gives
the calling thread's CPU time of the same calls: on a shared machine wall time counts the
waits for a core too, and a long call (a frame) waits more often than a short one (the
encoder), which inflates the wall-clock ratio. The encoder and the frame are timed
alternately (encoder, frame, encoder, ...) so that on a shared machine both see the same load;
``frame_stages_ms`` splits the frame (preprocess, encode, decode, posterior and Fix) by the
Localizer's own clocks, so the encoder as it runs inside the frame can be read next to the
encoder alone.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
import time
from typing import Callable

import numpy as np
import torch

from jzi_ros.inference.decode import greedy_reference


def bench_frame() -> np.ndarray:
    """Return the bench's camera frame: 640 x 480 RGB noise, the same every run (seed 0)."""
    return np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)


def cpu_encoder_input(map_dir, model_path) -> tuple:
    """
    One CPU thread, the localizer on ``map_dir`` / ``model_path`` and the bench frame's pixels.

    What the filter benchmarks interleave with the filter: ``(localizer, pixels [1, ...])``,
    ``localizer.backend.encode(pixels)`` being one ground-encoder pass.
    """
    from jzi_ros.inference.localizer import Localizer, LocalizerConfig

    torch.set_num_threads(1)
    localizer = Localizer.from_paths(map_dir, model_path, LocalizerConfig(device="cpu"))
    return localizer, localizer.preprocess(bench_frame())[None]


def stats(samples_ms: list[float]) -> dict[str, float]:
    values = np.asarray(samples_ms, dtype=np.float64)
    return {"median": round(float(np.median(values)), 3),
            "p95": round(float(np.percentile(values, 95)), 3)}


def round_robin(calls: dict[str, Callable[[], object]], rounds: int,
                warmup: int) -> dict[str, dict[str, float]]:
    """
    Call every function once per round, in turn; return each one's thread CPU ms stats.

    Interleaved calls share the machine's load, and each starts with the cache state a frame
    gives it (another model's weights last). The first ``warmup`` rounds are not counted.
    """
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for round_ in range(rounds):
        for name, call in calls.items():
            start = time.thread_time()
            call()
            if round_ >= warmup:
                samples[name].append((time.thread_time() - start) * 1e3)
    return {name: stats(values) for name, values in samples.items()}


@dataclass
class BenchRow:
    backend: str
    device: str
    dtype: str
    beam_width: int
    frames: int
    encoder_ms: dict[str, float]
    frame_ms: dict[str, float]
    paper_way_ms: dict[str, float] | None
    graph: str = ""  # torch on CPU: eager, jit or compile (LocalizerConfig.cpu_graph)
    frame_stages_ms: dict = field(default_factory=dict)  # median per stage inside the frame
    measured_ms: dict | None = None  # localize_measured (fusion's frame), no seeds
    seeded_ms: dict | None = None  # ... with the prior-seeded zoom (9 seeds)
    # CPU one thread: this thread's CPU time of the same encoder and frame calls
    cpu_ms: dict | None = None
    accuracy: dict = field(default_factory=dict)  # filled when labelled frames are given
    refine: dict = field(default_factory=dict)  # filled by bench_refinement (jzi bench --refine)
    # temporal filter per frame on this map and a 65,536-cell map (jzi bench, once per run)
    fusion_filter: list = field(default_factory=list)
    # visual odometry per frame (bench_filter.bench_visual_odometry), once per run
    visual_odometry: dict = field(default_factory=dict)
    # bench_retrieval per retrieval backend (--retrieval-model), once per run
    retrieval: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def label(self) -> str:
        """Return the backend as a table names it, with the CPU graph when there is one."""
        return f"{self.backend} ({self.graph})" if self.graph else self.backend

    @property
    def frame_over_encoder(self) -> float:
        return self.frame_ms["median"] / max(self.encoder_ms["median"], 1e-9)

    @property
    def speedup_vs_paper(self) -> float | None:
        if not self.paper_way_ms:
            return None
        return self.paper_way_ms["median"] / max(self.frame_ms["median"], 1e-9)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _time(fn: Callable[[], object], frames: int, warmup: int, device: str,
          cpu_out: list[float] | None = None) -> list[float]:
    """Wall ms per call; ``cpu_out`` also receives this thread's CPU ms per call."""
    for _ in range(warmup):
        fn()
    _sync(device)
    out = []
    for _ in range(frames):
        start, cpu_start = time.perf_counter(), time.thread_time()
        fn()
        _sync(device)
        out.append((time.perf_counter() - start) * 1e3)
        if cpu_out is not None:
            cpu_out.append((time.thread_time() - cpu_start) * 1e3)
    return out


TIMING_HEADING_DEG = 37.0  # a north-up model's timing frame has this heading (rotation timed)


def timing_heading(localizer) -> float | None:
    """Return the heading a timing frame carries: one for north-up models, else None."""
    return TIMING_HEADING_DEG if localizer.model_config.heading == "north-up" else None


@torch.inference_mode()
def paper_way_frame(model: torch.nn.Module, image_rgb: np.ndarray, pyramid,
                    device: str, dtype: torch.dtype, heading_deg: float | None = None
                    ) -> np.ndarray:
    """One frame the paper's way; returns the greedy path's terminal cell centre (E, N)."""
    from jzi_ros.model.preprocess import ground_pixels, view_pixels

    config, tree = model.config, pyramid.tree
    pixels = ground_pixels(image_rgb, config, heading_deg)[None].to(device, dtype)
    ground = model.encode_ground(pixels)

    def encode_current_view(prefixes: np.ndarray) -> torch.Tensor:
        views = np.asarray(pyramid.views[tree.view_indices(prefixes)])
        return model.encode_views(view_pixels(views, config).to(device, dtype))

    paths, _ = greedy_reference(model, ground, encode_current_view, tree.depth)
    return tree.cell_centers_local(paths.cpu().numpy())[0]


def bench_localizer(localizer, image_rgb: np.ndarray, frames: int = 30, warmup: int = 5,
                    paper_way: bool = True) -> BenchRow:
    """Time one Localizer (its backend, device and beam) on ``image_rgb``."""
    backend = localizer.backend
    device = backend.device
    heading = timing_heading(localizer)
    pixels = localizer.preprocess(image_rgb, heading)[None]
    encoder, frame, stages, encoder_cpu, frame_cpu = [], [], {}, [], []
    for index in range(warmup + frames):  # alternate: both see the same machine load
        encoder_ms = _time(lambda: backend.encode(pixels), 1, 0, device, encoder_cpu)
        frame_ms = _time(lambda: stages.setdefault("fix", []).append(
            localizer.localize(image_rgb, heading)), 1, 0, device, frame_cpu)
        if index >= warmup:
            encoder += encoder_ms
            frame += frame_ms
    del encoder_cpu[:warmup], frame_cpu[:warmup]
    for fix in stages.pop("fix")[warmup:]:
        for name, value in fix.timings_ms.items():
            if name != "total":
                stages.setdefault(name, []).append(value)
    paper = None
    model = getattr(backend, "model", None)
    if paper_way and model is not None:
        dtype = next(model.parameters()).dtype
        paper = stats(_time(lambda: paper_way_frame(model, image_rgb, localizer.pyramid,
                                                    device, dtype, heading),
                            frames, warmup, device))
    from jzi_ros.inference.localizer import backend_beam

    measured = seeded = None
    tree = localizer.tree
    if backend.name == "torch" and tree.depth > 1:
        from jzi_ros.inference.decode import Seeds

        level = tree.depth - 1
        seeds = Seeds(level, np.arange(9, dtype=np.int64) % tree.num_actions ** level)
        measured, seeded = [], []
        for index in range(warmup + frames):  # alternate, as above
            plain_ms = _time(lambda: localizer.localize_measured(image_rgb, heading), 1, 0,
                             device)
            seeded_ms = _time(lambda: localizer.localize_measured(image_rgb, heading,
                                                                  seeds=seeds), 1, 0, device)
            if index >= warmup:
                measured += plain_ms
                seeded += seeded_ms
        measured, seeded = stats(measured), stats(seeded)
    # one thread on the CPU: its CPU time is the work done, whatever else the machine runs
    # (a busy machine preempts a long frame more often than a short encoder call)
    cpu_ms = ({"encoder": stats(encoder_cpu), "frame": stats(frame_cpu)}
              if device == "cpu" and localizer.config.threads == 1 else None)
    graph = localizer.config.cpu_graph if (backend.name, device) == ("torch", "cpu") else ""
    return BenchRow(backend.name, device, backend.precision, backend_beam(localizer), frames,
                    stats(encoder), stats(frame), paper, graph,
                    {name: round(float(np.median(v)), 3) for name, v in stages.items()},
                    measured, seeded, cpu_ms)


def bench_retrieval(retrieval, image_rgb: np.ndarray, frames: int = 30, warmup: int = 5
                    ) -> dict:
    """
    Time the retrieval baseline's frame (``RetrievalLocalizer.localize``) on one image.

    Returns wall and thread CPU ms per frame (median, p95), the median of each stage inside
    the frame (preprocess, encode, search: the fix's ``timings``), the number of map views
    searched and the view table's bytes.
    """
    stages: list[dict] = []
    cpu: list[float] = []
    heading = timing_heading(retrieval)

    def frame() -> None:
        stages.append(retrieval.localize(image_rgb, heading_deg=heading).timings_ms)

    wall = _time(frame, frames, warmup, "cpu", cpu)
    timed = stages[warmup:]
    return {"frame_ms": stats(wall), "cpu_ms": stats(cpu),
            "stages_ms": {k: round(float(np.median([t[k] for t in timed])), 3)
                          for k in ("preprocess", "encode", "search")},
            "views": len(retrieval.rows), "table_bytes": retrieval.nbytes}


def accuracy(localizer, samples: list[tuple],
             thresholds_m: tuple[float, ...] = (25.0, 50.0, 100.0, 250.0)) -> dict:
    """
    Median error, recall within ``thresholds_m`` and mean NEES over labelled frames.

    ``samples``: ``(image, latitude, longitude[, heading_deg])``; a north-up model needs the
    heading. The CLI passes the thresholds every report uses (evaluation's DEFAULT_RECALL_M).
    """
    from jzi_ros.inference.posterior import nees_2d

    tree = localizer.tree
    errors, nees_rows = [], []
    for image, lat, lon, *heading in samples:
        fix = localizer.localize(image, heading[0] if heading else None)
        truth = np.array(tree.to_local(lat, lon), dtype=np.float64)
        error = np.array([fix.east_m, fix.north_m]) - truth
        errors.append(float(np.hypot(*error)))
        nees_rows.append(float(nees_2d(error[None], fix.covariance_enu[None, :2, :2])[0]))
    errors_arr = np.asarray(errors)
    return {"frames": len(errors), "median_error_m": round(float(np.median(errors_arr)), 2),
            **{f"recall@{d:g}m": round(float(np.mean(errors_arr <= d)), 4)
               for d in thresholds_m},
            "mean_nees": round(float(np.mean(nees_rows)), 3)}


def speed_words(speedup: float | None) -> str:
    """Say ``2.50x faster`` or ``1.61x slower`` (never "0.62x faster"); "-" when unknown."""
    if not speedup:
        return "-"
    if speedup >= 1.0:
        return f"{speedup:.2f}x faster"
    return f"{1.0 / speedup:.2f}x slower"


def _med_p95(times: dict) -> str:
    return f"{times['median']:.2f} / {times['p95']:.2f}"


def format_table(rows: list[BenchRow]) -> str:
    head = ("| backend | device | dtype | beam | encoder ms (med / p95) | frame ms (med / p95) "
            "| paper way ms (med / p95) | frame / encoder | vs paper way |")
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        paper = _med_p95(r.paper_way_ms) if r.paper_way_ms else "-"
        speed = speed_words(r.speedup_vs_paper)
        lines.append(f"| {r.label} | {r.device} | {r.dtype} | {r.beam_width} | "
                     f"{_med_p95(r.encoder_ms)} | {_med_p95(r.frame_ms)} | {paper} | "
                     f"{r.frame_over_encoder:.2f} | {speed} |")
    if any(r.frame_stages_ms for r in rows):
        lines += ["", "| backend | beam | inside the frame, ms (median): preprocess | encode "
                  "| decode | posterior + Fix | frame / encode inside it |", "|" + "---|" * 7]
        for r in rows:
            f = r.frame_stages_ms
            if f:
                ratio = r.frame_ms["median"] / max(f.get("encode", 0.0), 1e-9)
                lines.append(f"| {r.label} | {r.beam_width} | {f.get('preprocess', 0):.2f} | "
                             f"{f.get('encode', 0):.2f} | {f.get('decode', 0):.2f} | "
                             f"{f.get('posterior', 0):.2f} | {ratio:.2f} |")
    if any(r.cpu_ms for r in rows):
        lines += ["", "| backend | beam | thread CPU ms (med / p95): encoder | frame "
                  "| frame / encoder |", "|" + "---|" * 5]
        for r in rows:
            c = r.cpu_ms
            if c:
                ratio = c["frame"]["median"] / max(c["encoder"]["median"], 1e-9)
                lines.append(f"| {r.label} | {r.beam_width} | {_med_p95(c['encoder'])} | "
                             f"{_med_p95(c['frame'])} | {ratio:.2f} |")
    if any(r.seeded_ms for r in rows):
        lines += ["", "| backend | beam | fusion's frame ms (med / p95) | with the seeded zoom "
                  "ms (med / p95) | seeding costs |", "|" + "---|" * 5]
        for r in rows:
            if r.seeded_ms:
                extra = r.seeded_ms["median"] / max(r.measured_ms["median"], 1e-9) - 1
                lines.append(f"| {r.label} | {r.beam_width} | {_med_p95(r.measured_ms)} | "
                             f"{_med_p95(r.seeded_ms)} | {100 * extra:+.0f} % |")
    if any(r.accuracy for r in rows):
        keys = [k for k in next(r.accuracy for r in rows if r.accuracy) if k.startswith("rec")]
        lines += ["", "| backend | beam | frames | median error m | "
                  + " | ".join(f"R@{k[len('recall@'):-1]} m" for k in keys) + " | mean NEES |",
                  "|" + "---|" * (5 + len(keys))]
        for r in rows:
            a = r.accuracy
            if a:
                recall = " | ".join(f"{a[k]:.1%}" for k in keys)
                lines.append(f"| {r.backend} | {r.beam_width} | {a['frames']} | "
                             f"{a['median_error_m']:.1f} | {recall} | {a['mean_nees']:.2f} |")
    return "\n".join(lines)


def format_retrieval(timings: dict[str, dict], rows: list[BenchRow]) -> str:
    """Return a table of the retrieval frame per backend next to each CPU zoom frame."""
    lines = ["", "| method | frame ms (med / p95) | inside it, ms (median): preprocess / encode "
             "/ search | thread CPU ms (med) | searched views | view table |",
             "|" + "---|" * 6]
    for name, timing in timings.items():
        stages = timing["stages_ms"]
        lines.append(f"| retrieval ({name}, cpu) | {_med_p95(timing['frame_ms'])} | "
                     f"{stages['preprocess']:.2f} / {stages['encode']:.2f} / "
                     f"{stages['search']:.2f} | {timing['cpu_ms']['median']:.2f} | "
                     f"{timing['views']} | {timing['table_bytes'] / 2 ** 10:.0f} KiB |")
    for r in rows:
        if r.device == "cpu":
            lines.append(f"| zoom, {r.label} beam {r.beam_width} | {_med_p95(r.frame_ms)} | "
                         "- | - | - | - |")
    return "\n".join(lines)


def synthetic_setup(name: str, grid: int, depth: int, folder: Path) -> tuple[Path, Path]:
    """
    Build a random model of a named size and a synthetic map embedded with random vectors.

    What ``jzi bench --preset`` times: the latency of a model size without a trained model or
    real imagery. Returns (map directory, checkpoint path) inside ``folder``.
    """
    from jzi_ros.geo import CellTree
    from jzi_ros.maps.pyramid import write_pyramid
    from jzi_ros.model.checkpoint import save_checkpoint
    from jzi_ros.model.config import ModelConfig
    from jzi_ros.model.zoom import ZoomModel

    torch.manual_seed(0)
    model = ZoomModel(ModelConfig.preset(name, grid=grid, depth=depth))
    model_path = folder / f"{name}.safetensors"
    save_checkpoint(model_path, model, {"source": "jzi bench --preset (random weights)"})
    tree = CellTree(38.9, -77.03, 10_000.0, grid=grid, depth=depth)

    def render(path):
        # small tiles: the paper way resizes them to the encoder size anyway
        seed = tree.view_index(path) if len(path) < depth else 0
        return np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    pyramid = write_pyramid(folder / "map", tree, 32, render, {"synthetic": "bench"},
                            progress=False)
    table = np.random.default_rng(1).standard_normal((tree.num_views, model.embed_dim))
    pyramid.write_embeddings(table.astype(np.float16), model.encoder_hash())
    return pyramid.path, model_path
