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
Per-frame cost of the temporal filter, on simulated zooms (``jzi bench``'s filter rows).

:func:`simulated_steps` gives a zoom measurement with the network's shapes at any point of any
tree (also what the filter tests and benchmarks feed it); :func:`bench_filter` times the
measurement, the filter step and the fused Fix per frame, behind the ground encoder as in the
node. Split from :mod:`jzi_ros.inference.bench` (the localizer's own timings).
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np

from jzi_ros.inference.bench import stats


def simulated_steps(tree, east: float, north: float, right: bool, rng: np.random.Generator,
                    beam: int = 4, sharpness: float = 4.0):
    """
    Simulate a zoom measurement (:class:`~jzi_ros.inference.decode.BeamSteps`) at a point.

    Every step favours the true child when ``right`` (else the children towards a random
    point), with noise; the beam keeps the top ``beam`` prefixes as the real search does.
    Same shapes and piece counts as the network's, for timing the filter on any tree.
    """
    from jzi_ros.inference.decode import BeamSteps

    k, depth = tree.num_actions, tree.depth
    half = tree.size_m / 2
    favoured = (tree.path_of_local(east, north) if right
                else tree.path_of_local(*rng.uniform(-half, half, 2)))

    def child_lp(prefix: tuple[int, ...]) -> np.ndarray:
        logits = rng.normal(0, 0.5, k)
        if prefix == tuple(favoured[:len(prefix)]):
            logits[favoured[len(prefix)]] += sharpness
        return logits - np.logaddexp.reduce(logits)

    def level_index(path: tuple[int, ...]) -> int:
        index = 0
        for action in path:
            index = index * k + action
        return index

    root_lp = child_lp(())
    beams = [((int(a),), float(root_lp[a])) for a in np.argsort(-root_lp)[:beam]]
    prefix_index, prefix_lp, step_lp = [], [], []
    for _ in range(1, depth):
        rows = [child_lp(p) for p, _ in beams]
        prefix_index.append([level_index(p) for p, _ in beams])
        prefix_lp.append([lp for _, lp in beams])
        step_lp.append(rows)
        options = [(p + (a,), lp + row[a]) for (p, lp), row in zip(beams, rows)
                   for a in range(k)]
        beams = sorted(options, key=lambda o: -o[1])[:beam]
    if depth == 1:
        return BeamSteps(root_lp, np.zeros((1, beam), np.int64),
                         np.full((1, beam), -1.0e9), np.zeros((1, beam, k)))
    return BeamSteps(root_lp, np.array(prefix_index), np.array(prefix_lp), np.array(step_lp))


def bench_filter(tree, frames: int = 200, warmup: int = 20, config=None,
                 right_rate: float = 0.5, seed: int = 0,
                 encode: Callable[[], object] | None = None,
                 frame: Callable[[], object] | None = None) -> dict[str, float]:
    """
    Time the temporal filter per frame on ``tree``, interleaved with ``encode`` when given.

    Each frame: the measurement from the zoom's steps, the filter step and the fused Fix. The
    zooms are simulated (:func:`simulated_steps`) along a track crossing the map at
    15 m/s; simulating them is not timed. With ``encode`` (the ground encoder on one frame)
    every filter frame follows one encoder pass, which flushes the caches the filter would
    find warm in a tight loop; both are timed by wall clock and by thread CPU time (less
    sensitive to other processes on a busy machine), so the filter's share of the encoder comes
    from the same run. ``frame`` (untimed, between the two): the rest of what precedes the
    filter in the node, the frame's own localization (``Localizer.localize_measured``: encoder,
    beam search, posterior and the single-frame Fix), so the filter meets the caches as it does
    there; without it the filter follows the encoder alone (a harsher order than the node's).
    Returns medians (p95 of the filter's wall time) in ms, the map's size and the kernel that
    ran (``FusionConfig.kernel`` resolved).
    """
    from jzi_ros.inference.fusion import CellFilter
    from jzi_ros.inference.fusion_config import FusionConfig
    from jzi_ros.inference.measurement import Measurement

    rng = np.random.default_rng(seed)
    total = frames + warmup
    half = tree.size_m / 2
    start = rng.uniform(-0.5, 0.5, 2) * half
    heading = rng.uniform(0, 2 * np.pi)
    step = 15.0 * np.array([np.cos(heading), np.sin(heading)])
    track = np.clip(start + np.arange(total)[:, None] * step, -half + 1, half - 1)
    zooms = [simulated_steps(tree, e, n, bool(rng.uniform() < right_rate), rng)
             for e, n in track]
    fusion = CellFilter(tree, config or FusionConfig())

    def filter_frame(i: int) -> None:
        measurement = Measurement.from_steps(tree, zooms[i])
        fusion.fix(fusion.step(10**18 + i * 10**9, measurement), 0.0, 100.0)

    return {"terminal_cells": tree.num_actions ** tree.depth, "size_m": tree.size_m,
            "particles": fusion.config.particles, "kernel": fusion.kernel,
            **interleaved(filter_frame, total, warmup, encode, frame)}


def interleaved(work: Callable[[int], object], total: int, warmup: int,
                encode: Callable[[], object] | None = None,
                frame: Callable[[], object] | None = None) -> dict[str, float]:
    """
    Time ``work(i)`` for ``i < total``, each after ``encode`` (timed) and ``frame`` (untimed).

    Returns the medians (and p95 of the wall time) in ms of the calls after ``warmup``, by wall
    clock and thread CPU time, and the encoder's (when given) from the same run.
    """
    samples = []  # (work wall, work CPU, encoder wall, encoder CPU) seconds
    for i in range(total):
        wall, cpu = time.perf_counter(), time.thread_time()
        if encode is not None:
            encode()
        encoder_wall, encoder_cpu = time.perf_counter() - wall, time.thread_time() - cpu
        if frame is not None:
            frame()
        wall, cpu = time.perf_counter(), time.thread_time()
        work(i)
        if i >= warmup:
            samples.append((time.perf_counter() - wall, time.thread_time() - cpu, encoder_wall,
                            encoder_cpu))
    ms = 1e3 * np.asarray(samples)
    out = {**stats(ms[:, 0].tolist()), "cpu_median": round(float(np.median(ms[:, 1])), 3)}
    if encode is not None:
        out.update(encoder_median=round(float(np.median(ms[:, 2])), 3),
                   encoder_cpu_median=round(float(np.median(ms[:, 3])), 3))
    return out


def bench_visual_odometry(image: np.ndarray, frames: int = 200, warmup: int = 20,
                          encode: Callable[[], object] | None = None) -> dict[str, float]:
    """
    Time visual odometry per frame (fusion.visual_odometry), interleaved with ``encode``.

    ``image`` and a copy moved by (8, 6) px alternate, so every pair is matched as in flight;
    each follows one encoder pass when ``encode`` is given (as in the node). Returns medians in
    ms (wall, thread CPU), the p95, and how many pairs matched.
    """
    from jzi_ros.inference.visual_odometry import VisualOdometry, VisualOdometryConfig

    moved = np.roll(image, (6, 8), axis=(0, 1))
    odometry = VisualOdometry(VisualOdometryConfig(hfov_deg=70.0))
    timing = interleaved(lambda i: odometry.add_frame(10**18 + i * 10**8,
                                                      moved if i % 2 else image, 0.0),
                         frames + warmup, warmup, encode)
    return {**timing, "matched": odometry.matched, "tried": odometry.tried,
            "pixels": f"{image.shape[1]} x {image.shape[0]}"}
