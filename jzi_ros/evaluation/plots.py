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
Replay plots (matplotlib, Agg backend: no display needed).

Error CDF, trajectory over the map's root view with covariance ellipses, error over time.
Written as PNG, atomically.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot: headless robots and CI have no display

from matplotlib.patches import Ellipse  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from jzi_ros.evaluation.fusion_replay import LABELS  # noqa: E402
from jzi_ros.evaluation.metrics import CHI2_2D_1SIGMA, CHI2_2D_2SIGMA, DEFAULT_RECALL_M  # noqa
from jzi_ros.files import atomic_path  # noqa: E402

ERROR_CDF = "error_cdf.png"
TRAJECTORY = "trajectory.png"
ERROR_TIME = "error_time.png"
FUSION_TRACKS = "fusion_tracks.png"
MAX_ELLIPSES = 150  # more just paints the plot solid


def _save(fig: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def ellipse_axes(cov_en: np.ndarray, chi2: float) -> tuple[float, float, float]:
    """(width, height, angle in degrees from East) of the ellipse e^T P^-1 e = chi2."""
    values, vectors = np.linalg.eigh(np.asarray(cov_en, float))
    values = np.maximum(values, 0.0)
    width, height = 2 * np.sqrt(chi2 * values[::-1])
    angle = float(np.degrees(np.arctan2(vectors[1, 1], vectors[0, 1])))
    return float(width), float(height), angle


def plot_error_cdf(scored: Any, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for errors, label in ((scored.top1_error_m, "best cell, all scored frames"),
                          (scored.error_m[scored.is_fix], "published fix, FIX frames")):
        if errors.size:
            xs = np.sort(errors)
            ax.step(xs, np.arange(1, xs.size + 1) / xs.size, where="post",
                    label=f"{label} (n={xs.size})")
    for d in DEFAULT_RECALL_M:
        ax.axvline(d, color="grey", lw=0.6, ls=":")
    ax.set_xscale("symlog", linthresh=10)
    ax.set_xlim(left=0)
    ax.set_xlabel("horizontal error [m]")
    ax.set_ylabel("fraction of frames")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", fontsize=8)
    ax.set_title("Error CDF (dotted: 25 / 50 / 100 / 250 m)")
    _save(fig, path)


def plot_trajectory(result: Any, scored: Any, path: Path, pyramid: Any = None) -> None:
    tree = result.tree
    half = tree.size_m / 2
    fig, ax = plt.subplots(figsize=(7, 7))
    if pyramid is not None:
        # root view: row 0 is the north edge, so origin="upper" with a north-up extent
        ax.imshow(np.asarray(pyramid.view(())), extent=(-half, half, -half, half),
                  origin="upper", interpolation="bilinear")
    gt_track = result.ground_truth
    ax.plot(gt_track.east_m, gt_track.north_m, color="white", lw=3, alpha=0.7)
    ax.plot(gt_track.east_m, gt_track.north_m, color="tab:green", lw=1.5, label="ground truth")
    fix = scored.is_fix
    for est, gt in zip(scored.est_en, scored.gt_en):  # which estimate belongs to which GT
        ax.plot([est[0], gt[0]], [est[1], gt[1]], color="black", lw=0.4, alpha=0.4)
    if (~fix).any():
        ax.scatter(*scored.est_en[~fix].T, s=10, marker="x", color="tab:grey",
                   label="NO_FIX estimate")
    if fix.any():
        ax.scatter(*scored.est_en[fix].T, s=10, color="tab:red", label="FIX estimate", zorder=3)
        index = np.flatnonzero(fix)
        for i in index[::max(1, int(np.ceil(index.size / MAX_ELLIPSES)))]:
            width, height, angle = ellipse_axes(scored.cov_en[i], CHI2_2D_1SIGMA)
            ax.add_patch(Ellipse(scored.est_en[i], width, height, angle=angle, fill=False,
                                 color="tab:orange", lw=0.7, alpha=0.8))
    points = np.concatenate([scored.gt_en, scored.est_en,
                             np.stack([gt_track.east_m, gt_track.north_m], 1)])
    lo, hi = points.min(0), points.max(0)
    pad = max(0.1 * float((hi - lo).max()), tree.cell_side(tree.depth))
    ax.set_xlim(max(-half, lo[0] - pad), min(half, hi[0] + pad))
    ax.set_ylim(max(-half, lo[1] - pad), min(half, hi[1] + pad))
    ax.set_aspect("equal")
    ax.set_xlabel("east of map centre [m]")
    ax.set_ylabel("north of map centre [m]")
    ax.set_title("Estimates vs ground truth (ellipses: 1-sigma, 68 %)")
    ax.legend(loc="best", fontsize=8)
    _save(fig, path)


def plot_error_time(scored: Any, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 3.5))
    if scored.stamps_ns.size:
        t = (scored.stamps_ns - scored.stamps_ns[0]) / 1e9
        errors, fix = scored.error_m, scored.is_fix
        ax.plot(t[fix], errors[fix], ".", color="tab:red", ms=4, label="FIX")
        ax.plot(t[~fix], errors[~fix], "x", color="tab:grey", ms=4, label="NO_FIX")
        # the 2-sigma ellipse's semi-major axis: an error above it is surely outside
        bound = np.sqrt(CHI2_2D_2SIGMA * np.linalg.eigvalsh(scored.cov_en)[:, -1])
        ax.plot(t[fix], bound[fix], "-", color="tab:orange", lw=0.8,
                label="2-sigma semi-major axis")
        ax.set_yscale("symlog", linthresh=10)
        ax.legend(loc="best", fontsize=8)
    ax.set_xlabel("time since first scored frame [s]")
    ax.set_ylabel("error [m]")
    ax.grid(alpha=0.3)
    ax.set_title("Error over time")
    _save(fig, path)


def plot_fusion_tracks(result: Any, path: Path, pyramid: Any = None) -> None:
    """Ground truth, single-frame estimates and each fused track (FIX solid, NO_FIX faint)."""
    tree = result.tree
    half = tree.size_m / 2
    fig, axes = plt.subplots(1, 2, figsize=(13, 6.5), gridspec_kw={"width_ratios": [1, 1.2]})
    ax = axes[0]
    if pyramid is not None:
        ax.imshow(np.asarray(pyramid.view(())), extent=(-half, half, -half, half),
                  origin="upper", interpolation="bilinear", alpha=0.6)
    gt = result.ground_truth
    ax.plot(gt.east_m, gt.north_m, color="tab:green", lw=2, label="ground truth")
    single = np.array([(r.fix.east_m, r.fix.north_m) for r in result.records
                       if r.fix is not None]).reshape(-1, 2)
    ax.scatter(*single.T, s=6, color="tab:grey", alpha=0.6, label="single frame")
    colours = ("tab:red", "tab:blue", "tab:purple", "tab:orange", "tab:green")
    used = [i for i, r in enumerate(result.records) if r.used]
    times = np.array([result.records[i].stamp_ns for i in used], np.int64)
    ax2 = axes[1]
    gt_en = np.array([(result.records[i].gt.east_m, result.records[i].gt.north_m)
                      for i in used]).reshape(-1, 2)
    t = (times - times.min()) / 1e9 if times.size else times
    if used:
        err = np.hypot(*(np.array([(result.records[i].fix.east_m, result.records[i].fix.north_m)
                                   for i in used]) - gt_en).T)
        ax2.plot(t, err, ".", color="tab:grey", ms=3, label="single frame")
    for colour, (name, fixes) in zip(colours, result.fused.items()):
        track = np.array([(f.east_m, f.north_m, f.ok) for f in fixes if f is not None])
        if track.size == 0:
            continue
        ok = track[:, 2].astype(bool)
        label = LABELS.get(name, name.replace("_", " "))
        ax.plot(track[:, 0], track[:, 1], color=colour, lw=0.6, alpha=0.35)
        ax.scatter(*track[ok, :2].T, s=5, color=colour, label=f"{label} (FIX)")
        if used:
            est = np.array([(fixes[i].east_m, fixes[i].north_m) for i in used])
            err = np.hypot(*(est - gt_en).T)
            fix_ok = np.array([fixes[i].ok for i in used])
            ax2.plot(t, err, "-", color=colour, lw=0.8, alpha=0.5)
            ax2.plot(t[fix_ok], err[fix_ok], ".", color=colour, ms=3, label=f"{label} (FIX)")
    ax.set_xlim(-half, half)
    ax.set_ylim(-half, half)
    ax.set_aspect("equal")
    ax.set_xlabel("east of map centre [m]")
    ax.set_ylabel("north of map centre [m]")
    ax.legend(loc="best", fontsize=7)
    ax.set_title("Single-frame estimates vs fused tracks")
    ax2.set_yscale("symlog", linthresh=10)
    ax2.set_xlabel("time since first scored frame [s]")
    ax2.set_ylabel("error [m]")
    ax2.grid(alpha=0.3)
    ax2.legend(loc="best", fontsize=7)
    ax2.set_title("Error over time (lines: every frame, dots: FIX)")
    _save(fig, path)


def write_plots(result: Any, scored: Any, out_dir: Path, pyramid: Any = None) -> list[Path]:
    out_dir = Path(out_dir)
    paths = [out_dir / ERROR_CDF, out_dir / TRAJECTORY, out_dir / ERROR_TIME]
    plot_error_cdf(scored, paths[0])
    plot_trajectory(result, scored, paths[1], pyramid)
    plot_error_time(scored, paths[2])
    if getattr(result, "fused", None):
        paths.append(out_dir / FUSION_TRACKS)
        plot_fusion_tracks(result, paths[-1], pyramid)
    return paths
