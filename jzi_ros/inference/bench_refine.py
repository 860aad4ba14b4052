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
Refinement's cost next to the encoder (``jzi bench --refine``'s table and tracked pass).

:func:`bench_refinement` times refinement after the zoom's fix and classical registration on
one frame; :func:`bench_tracked_refinement` a moving pass with ``track_frames`` (tracking
between SIFT registrations), each frame's refinement right after its zoom as the node runs
them. Split from :mod:`jzi_ros.inference.bench` (the localizer's own timings).
"""
from __future__ import annotations

import math
import time

import numpy as np

from jzi_ros.inference.bench import _time, BenchRow, stats, timing_heading


def bench_refinement(localizer, refiner, classical, image_rgb: np.ndarray, intrinsics,
                     frames: int = 30, warmup: int = 5,
                     sequence: list[np.ndarray] | None = None) -> dict:
    """
    Time refinement after the zoom's fix, and classical registration, on one frame.

    Returns ``{"refine_ms", "refine_cpu_ms", "classical_ms", "refined", "note"}``; the note
    says whether the refinement was accepted (a rejected frame may try several cells, the slow
    path); ``refine_cpu_ms`` is this thread's CPU time (what ``cpu_ms`` is for the encoder).
    With ``sequence`` (moving frames) and ``track_frames`` set, ``tracked`` holds
    :func:`bench_tracked_refinement` over it.
    """
    fix = localizer.localize(image_rgb, timing_heading(localizer))
    cpu: list[float] = []
    refine = _time(lambda: refiner.refine(image_rgb, fix, intrinsics), frames, warmup, "cpu",
                   cpu)
    out = refiner.refine(image_rgb, fix, intrinsics)
    result = {"refine_ms": stats(refine), "refine_cpu_ms": stats(cpu),
              "refined": bool(out.refined), "note": out.refinement, "classical_ms": None,
              "track_frames": refiner.config.track_frames}
    if classical is not None:
        result["classical_ms"] = stats(_time(lambda: classical.localize(image_rgb, intrinsics),
                                             frames, warmup, "cpu"))
    result["tracked"] = None
    if sequence and refiner.config.track_frames > 0:
        result["tracked"] = bench_tracked_refinement(localizer, refiner, sequence, intrinsics)
    return result


def bench_tracked_refinement(localizer, refiner, images: list[np.ndarray], intrinsics,
                             period_ns: int = 10 ** 8) -> dict:
    """
    Time refinement over a moving sequence, tracking between SIFT registrations.

    Each frame is localized by the zoom (untimed) and then refined (timed), in order, with
    stamps ``period_ns`` apart (a 10 Hz camera), as the node does. With
    ``track_async`` the loop also waits that period between frames, as a camera would, while
    SIFT runs on the refiner's background thread. Returns the wall and this thread's CPU ms
    per frame (median, p95, mean; wall also max): all frames, the tracked ones and those that
    ran SIFT on the caller's thread, the zoom's encoder inside the same frames (wall: the
    node's order, its caches as the refinement before left them), and how many were tracked
    and accepted.
    """
    refiner.sequence.reset()
    wall: list[float] = []
    cpu: list[float] = []
    encoder: list[float] = []  # the zoom's encoder inside the same frames (wall ms)
    kinds: list[str] = []
    accepted = 0
    for i, image in enumerate(images):
        began = time.perf_counter()
        fix = localizer.localize(image, timing_heading(localizer))  # the node's order
        encoder.append(fix.timings_ms.get("encode", math.nan))
        started, cpu_started = time.perf_counter(), time.thread_time()
        out = refiner.refine(image, fix, intrinsics, stamp_ns=(i + 1) * period_ns)
        wall.append((time.perf_counter() - started) * 1e3)
        cpu.append((time.thread_time() - cpu_started) * 1e3)
        accepted += out.refined
        kinds.append("tracked" if "(tracked" in out.refinement
                     else "background" if "in the background" in out.refinement else "sift")
        if refiner.config.track_async:
            time.sleep(max(0.0, period_ns * 1e-9 - (time.perf_counter() - began)))
    refiner.sequence.reset()

    def of(kind: str) -> dict | None:
        values = [c for c, k in zip(cpu, kinds) if k == kind]
        return stats(values) if values else None

    tracked_wall = [w for w, k in zip(wall, kinds) if k == "tracked"]
    return {"frames": len(images), "tracked": kinds.count("tracked"), "accepted": accepted,
            "async": bool(refiner.config.track_async), "wall_ms": stats(wall),
            "tracked_wall_ms": stats(tracked_wall) if tracked_wall else None,
            "encoder_in_sequence_ms": stats(encoder),
            "mean_wall_ms": round(float(np.mean(wall)), 3), "max_wall_ms": round(max(wall), 3),
            "tracked_cpu_ms": of("tracked"), "detected_cpu_ms": of("sift"),
            "mean_cpu_ms": round(float(np.mean(cpu)), 3)}


def format_refinement(rows: list[BenchRow]) -> list[str]:
    """Return the table lines of the rows' refinement timings (none without any)."""
    lines: list[str] = []
    if not any(r.refine for r in rows):
        return lines
    lines += ["", "| backend | beam | encoder ms (med) | + refine ms (med / p95) "
              "| refine / encoder | same, thread CPU | classical ms (med / p95) "
              "| refinement |", "|" + "---|" * 8]
    for r in rows:
        f = r.refine
        if f:
            classical = (f"{f['classical_ms']['median']:.1f} / "
                         f"{f['classical_ms']['p95']:.1f}" if f["classical_ms"] else "-")
            cpu = "-"
            if r.cpu_ms and f.get("refine_cpu_ms"):  # one thread: both are work done
                work, encoder = f["refine_cpu_ms"]["median"], r.cpu_ms["encoder"]["median"]
                cpu = f"{work:.1f} / {encoder:.2f} ms = {work / max(encoder, 1e-9):.1f}x"
            lines.append(f"| {r.backend} | {r.beam_width} | {r.encoder_ms['median']:.2f} | "
                         f"{f['refine_ms']['median']:.1f} / {f['refine_ms']['p95']:.1f} | "
                         f"{f['refine_ms']['median'] / max(r.encoder_ms['median'], 1e-9):.1f}"
                         f"x | {cpu} | {classical} | {f['note']} |")
    for r in rows:
        t = r.refine.get("tracked") if r.refine else None
        if t and r.cpu_ms:
            encoder = max(r.cpu_ms["encoder"]["median"], 1e-9)
            how = ("SIFT on a background thread, never waited for (as in the node), a "
                   "frame every 100 ms" if t["async"]
                   else "SIFT on the frame's thread")
            wall = t["wall_ms"]
            part = [f"refinement over a {t['frames']}-frame moving sequence ({r.backend}, "
                    f"track_frames {r.refine['track_frames']}, {how}): {t['tracked']} frames "
                    f"tracked, {t['accepted']} accepted; latency per frame "
                    f"{wall['median']:.2f} / {wall['p95']:.2f} ms (median / p95; mean "
                    f"{t['mean_wall_ms']:.2f} ms, "
                    f"{t['mean_wall_ms'] / max(r.encoder_ms['median'], 1e-9):.2f}x the "
                    "encoder's wall time); thread CPU per frame"]
            for label, key in (("tracked", "tracked_cpu_ms"), ("SIFT", "detected_cpu_ms")):
                if t[key]:
                    med = t[key]["median"]
                    part.append(f"{label} {med:.2f} / {t[key]['p95']:.2f} ms (median / p95, "
                                f"{med / encoder:.2f}x the encoder)")
            part.append(f"mean {t['mean_cpu_ms']:.2f} ms ({t['mean_cpu_ms'] / encoder:.2f}x)")
            lines += ["", part[0] + ": " + ", ".join(part[1:]) + "."]
            inside, tracked = t.get("encoder_in_sequence_ms"), t.get("tracked_wall_ms")
            if inside and tracked:  # both timed in the node's order, in the same frames
                lines.append(f"In the same frames, in the node's order (wall, median / "
                             f"p95): the encoder {inside['median']:.2f} / {inside['p95']:.2f}"
                             f" ms, a tracked refinement {tracked['median']:.2f} / "
                             f"{tracked['p95']:.2f} ms = "
                             f"{tracked['median'] / max(inside['median'], 1e-9):.2f}x / "
                             f"{tracked['p95'] / max(inside['p95'], 1e-9):.2f}x.")
    return lines
