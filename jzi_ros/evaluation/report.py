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
The replay report: numbers (JSON), a readable summary (Markdown), per-frame CSV and plots.

Three error families, because they answer different questions:
- ``top1``: the policy's best terminal cell (first hypothesis) on every scored frame, whatever
  the status: the paper's Recall@1, comparable with its table.
- ``estimate``: the published estimate on every scored frame, whatever the status: what a
  refined (or filtered) position adds over the cell, counted over the same frames as ``top1``.
- ``fix``: the published estimate (the NavSatFix a robot would get) on frames with FIX status;
  covariance calibration is measured on these, since NO_FIX covariances are placeholders.
Errors are horizontal distances in the map's local metric frame (metres).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
import datetime
import io
from pathlib import Path
import re
from typing import Any

import numpy as np

from jzi_ros.evaluation.fusion_replay import fusion_markdown, fusion_summary
from jzi_ros.evaluation.metrics import (calibration_summary, DEFAULT_RECALL_M, error_summary,
                                        fmt, IDEAL_CALIBRATION, latency_summary, nees_2d,
                                        path_accuracy, recall_at)
from jzi_ros.evaluation.replay import ReplayResult, SKIP_REASONS
from jzi_ros.files import atomic_directory, atomic_open, write_json
from jzi_ros.inference.fix import Fix, FixStatus

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
FRAMES_CSV = "frames.csv"


def top_hypothesis(fix: Fix):
    """Return the most probable hypothesis, or None when the fix carries none."""
    return max(fix.hypotheses, key=lambda h: h.probability) if fix.hypotheses else None


@dataclass(frozen=True)
class ScoredFrames:
    """Arrays over the scored frames (``ReplayResult.used``), in stamp order."""

    stamps_ns: np.ndarray  # int64 [N]
    gt_en: np.ndarray  # [N, 2] ground truth, local metres
    est_en: np.ndarray  # [N, 2] published estimate
    top1_en: np.ndarray  # [N, 2] best hypothesis cell centre (published estimate if none)
    cov_en: np.ndarray  # [N, 2, 2] published East/North covariance, m^2
    is_fix: np.ndarray  # bool [N]
    pred_paths: list  # best hypothesis path (or the estimate's cell), None if outside the map
    gt_paths: list

    @property
    def error_m(self) -> np.ndarray:
        return np.hypot(*(self.est_en - self.gt_en).T)

    @property
    def top1_error_m(self) -> np.ndarray:
        return np.hypot(*(self.top1_en - self.gt_en).T)


def score(result: ReplayResult) -> ScoredFrames:
    tree = result.tree
    used = result.used
    gt_en = np.array([(r.gt.east_m, r.gt.north_m) for r in used], float).reshape(-1, 2)
    est_en, top_en, pred_paths = [], [], []
    for r in used:
        est = tuple(float(v) for v in tree.to_local(r.fix.latitude, r.fix.longitude))
        top = top_hypothesis(r.fix)
        est_en.append(est)
        if top is None:
            top_en.append(est)
            pred_paths.append(tree.try_path_of(r.fix.latitude, r.fix.longitude))
        else:
            top_en.append(tuple(float(v) for v in tree.to_local(top.latitude, top.longitude)))
            pred_paths.append(tuple(top.path))
    gt_paths = [tree.path_of_local(e, n) for e, n in gt_en]
    return ScoredFrames(
        np.array([r.stamp_ns for r in used], np.int64), gt_en,
        np.array(est_en, float).reshape(-1, 2), np.array(top_en, float).reshape(-1, 2),
        np.array([r.fix.covariance_enu[:2, :2] for r in used], float).reshape(-1, 2, 2),
        np.array([r.fix.status == FixStatus.FIX for r in used], bool), pred_paths, gt_paths)


def _errors_block(errors: np.ndarray) -> dict[str, Any]:
    recall = recall_at(errors, DEFAULT_RECALL_M)
    return {**error_summary(errors), "recall": {f"{d:g}": v for d, v in recall.items()}}


def summarize(result: ReplayResult, map_path: str | Path | None = None) -> dict[str, Any]:
    """Return the report as a JSON-ready dict (see the module docstring: three error blocks)."""
    scored = score(result)
    localized = result.localized
    skipped: dict[str, int] = {}
    examples: dict[str, str] = {}
    for record in result.records:
        if record.skip:
            skipped[record.skip] = skipped.get(record.skip, 0) + 1
            examples.setdefault(record.skip, record.detail)
    fix_mask = scored.is_fix
    errors_fix = scored.error_m[fix_mask]
    error_en_fix = (scored.est_en - scored.gt_en)[fix_mask]
    stages: dict[str, list[float]] = {"decode": [], "localize": []}
    for record in localized:
        stages["decode"].append(record.decode_ms)
        stages["localize"].append(record.localize_ms)
        for name, value in record.fix.timings_ms.items():
            stages.setdefault(f"localizer.{name}", []).append(float(value))
    n_fix_all = sum(1 for r in localized if r.fix.status == FixStatus.FIX)
    processed = len(result.records)
    return {
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "bag": str(result.bag),
        "map": None if map_path is None else str(map_path),
        "map_root": result.tree.to_dict(),
        "backend": result.backend,
        "image_topic": result.options.image_topic,
        "image_type": result.image_msgtype,
        "gt_topic": result.options.gt_topic,
        "options": result.options_dict(),
        "interrupted": result.interrupted,
        "wall_s": result.wall_s,
        "frames_per_s": processed / result.loop_s if result.loop_s > 0 else 0.0,
        "frames": {
            "in_bag": result.frames_in_bag,
            "selected": result.frames_selected,
            "read": processed,
            "localized": len(localized),
            "used": len(result.used),
            "skipped": skipped,
            "skipped_examples": examples,
            "stamps_from_log_time": result.stamps_from_log_time,
        },
        "ground_truth": dict(result.ground_truth.counts),
        "fix_rate": n_fix_all / len(localized) if localized else None,
        "fix_rate_scored": float(fix_mask.mean()) if fix_mask.size else None,
        "top1": _errors_block(scored.top1_error_m),
        "estimate": _errors_block(scored.error_m),
        "fix": _errors_block(errors_fix),
        "path_accuracy": {str(k): v for k, v in path_accuracy(
            scored.pred_paths, scored.gt_paths, result.tree.depth).items()},
        "latency_ms": {name: latency_summary(values) for name, values in stages.items()},
        "calibration": {**calibration_summary(error_en_fix, scored.cov_en[fix_mask]),
                        "ideal": IDEAL_CALIBRATION},
        "fusion": fusion_summary(result),
        "refinement": refinement_summary(result, scored),
    }


def refinement_summary(result: ReplayResult, scored: ScoredFrames) -> dict[str, Any] | None:
    """
    Return acceptance, accepted median and false acceptances when the method refines.

    None for the zoom alone (no frame says anything about refinement). Over the scored frames,
    as :func:`jzi_ros.evaluation.classical.method_summary` counts them for the side-by-side
    table: a false acceptance is a refined fix more than ``FALSE_FIX_M`` off.
    """
    from jzi_ros.evaluation.classical import FALSE_FIX_M, method_summary

    if not any(r.fix.refinement for r in result.localized):
        return None
    used = result.used
    refined = [r.fix.refined for r in used]
    row = method_summary(scored.error_m, scored.is_fix,
                         [r.fix.timings_ms.get("refine", 0.0) for r in used], refined)
    reasons: dict[str, int] = {}
    for r in used:
        if not r.fix.refined:
            # the first cell's reason, numbers as N: "7 inliers (need 25)" -> "N inliers (need N)"
            why = r.fix.refinement.removeprefix("not refined: ").split("; ")[0]
            kind = re.sub(r"\d+(\.\d+)?", "N", why)
            reasons[kind] = reasons.get(kind, 0) + 1
    accepted = np.array(refined, bool) & scored.is_fix
    return {"frames": len(used), "accepted": int(sum(refined)),
            # of them registered by tracking the previous registration (--refine-track)
            "tracked": sum("(tracked" in r.fix.refinement for r in used if r.fix.refined),
            "acceptance_rate": row["acceptance_rate"] if used else None,
            "accepted_median_m": row["accepted_median_m"],
            # covariance consistency of the refined fixes alone (the zoom's fixes differ)
            "accepted_calibration": calibration_summary(
                (scored.est_en - scored.gt_en)[accepted], scored.cov_en[accepted]),
            "false_acceptances": int(sum(f and e > FALSE_FIX_M
                                         for f, e in zip(refined, scored.error_m))),
            "false_acceptance_rate": row["false_acceptance_rate"] if used else None,
            "false_m": FALSE_FIX_M, "refine_ms_median": row["latency_ms"],
            "not_refined": dict(sorted(reasons.items(), key=lambda kv: -kv[1]))}


def _nees(block: dict[str, Any]) -> str:
    """Return "mean / median" NEES of the accepted refined fixes (reports before it: missing)."""
    nees = block.get("accepted_calibration") or {}
    return f"{fmt(nees.get('mean_nees'), '.2f')} / {fmt(nees.get('median_nees'), '.2f')}"


def refinement_markdown(block: dict[str, Any] | None) -> list[str]:
    """Return the report.md lines of :func:`refinement_summary` (none without refinement)."""
    if not block:
        return []
    lines = ["## Refinement", "", "| | value |", "|---|---:|",
             f"| scored frames | {block['frames']} |",
             f"| accepted (refined) | {block['accepted']} ({_pct(block['acceptance_rate'])}) |",
             *([f"| of them tracked (no SIFT on the frame) | {block['tracked']} |"]
               if block.get("tracked") else []),
             f"| accepted median error | {fmt(block['accepted_median_m'], '.1f', ' m')} |",
             f"| accepted mean / median NEES (ideal 2 / 1.39) | {_nees(block)} |",
             f"| false acceptances (> {block['false_m']:g} m) | {block['false_acceptances']} "
             f"({_pct(block['false_acceptance_rate'])}) |",
             f"| refinement median | {fmt(block['refine_ms_median'], '.1f', ' ms')} |", ""]
    if block["not_refined"]:
        lines += ["| not refined because | frames |", "|---|---:|"]
        lines += [f"| {why} | {count} |" for why, count in block["not_refined"].items()]
        lines.append("")
    return lines


def _pct(value: float | None) -> str:
    return fmt(value, ".1f", " %", 100.0)


def render_markdown(summary: dict[str, Any]) -> str:
    """Render a human-readable report.md from :func:`summarize`'s dict."""
    s, frames = summary, summary["frames"]
    lines = ["# jzi replay report", ""]
    if s["interrupted"]:
        lines += ["**Interrupted (Ctrl-C): partial results.**", ""]
    lines += [f"- bag: `{s['bag']}`", f"- map: `{s['map']}`", f"- backend: {s['backend']}",
              f"- images: `{s['image_topic']}` ({s['image_type']}), ground truth: "
              f"`{s['gt_topic']}`",
              f"- {frames['read']} frames, {s['frames_per_s']:.2f} frames/s "
              f"({s['wall_s']:.1f} s in all, bag scanning included)", "",
              "## Frames", "", "| | count |", "|---|---:|",
              f"| in bag | {frames['in_bag']} |", f"| selected | {frames['selected']} |",
              f"| read | {frames['read']} |", f"| localized | {frames['localized']} |",
              f"| scored (used) | {frames['used']} |"]
    for key, count in sorted(frames["skipped"].items()):
        lines.append(f"| skipped: {SKIP_REASONS.get(key, key)} | {count} |")
    for key, example in sorted(frames["skipped_examples"].items()):
        lines.append(f"\nExample ({key}): {example}")
    lines += ["", f"Fix rate (FIX status among localized frames): {_pct(s['fix_rate'])}", "",
              "## Accuracy", "",
              "| | frames | " + " | ".join(f"R@{d} m" for d in s["top1"]["recall"])
              + " | median | mean | p95 |",
              "|---|---:|" + "---:|" * (len(s["top1"]["recall"]) + 3)]
    for name, label in (("top1", "best cell, all scored frames"),
                        ("estimate", "published estimate, all scored frames"),
                        ("fix", "published fix, FIX frames")):
        if name not in s:  # a report written before the block existed
            continue
        block = s[name]
        lines.append(f"| {label} | {block['count']} | "
                     + " | ".join(_pct(v) for v in block["recall"].values())
                     + f" | {fmt(block['median_m'], '.1f', ' m')} | "
                     f"{fmt(block['mean_m'], '.1f', ' m')} | {fmt(block['p95_m'], '.1f', ' m')} |")
    base = s.get("baselines", {})
    for name, label in (("chance", "chance: uniform terminal cell"),
                        ("prior", "no-image prior: constant guess")):
        if name in base:
            block = base[name]
            lines.append(f"| {label} | {block['count']} | "
                         + " | ".join(_pct(v) for v in block["recall"].values())
                         + f" | {fmt(block['median_m'], '.1f', ' m')} | "
                         f"{fmt(block['mean_m'], '.1f', ' m')} | "
                         f"{fmt(block['p95_m'], '.1f', ' m')} |")
    if "prior" in base:
        lines += ["", f"No-image prior: {base['prior']['from']}."]
    lines += ["", "## Path accuracy (first L zoom steps correct)", "",
              "| level | accuracy |" + (" chance | prior |" if base else ""),
              "|---:|---:|" + ("---:|---:|" if base else "")]
    lines += [f"| {level} | {_pct(acc)} |" + (
        f" {_pct(base['chance']['path_accuracy'][level])} | "
        f"{_pct(base['prior']['path_accuracy'][level])} |" if base else "")
        for level, acc in s["path_accuracy"].items()]
    cal = s["calibration"]
    ideal = cal["ideal"]
    lines += ["", "## Covariance calibration (FIX frames)", "", "| | measured | ideal |",
              "|---|---:|---:|", f"| frames | {cal['count']} | |",
              f"| mean NEES | {fmt(cal['mean_nees'], '.2f')} | {ideal['mean_nees']:.2f} |",
              f"| inside 1-sigma ellipse | {_pct(cal['inside_1sigma'])} | "
              f"{_pct(ideal['inside_1sigma'])} |",
              f"| inside 2-sigma ellipse | {_pct(cal['inside_2sigma'])} | "
              f"{_pct(ideal['inside_2sigma'])} |"]
    if s.get("calibration_check"):
        lines += ["", f"Calibration check: {s['calibration_check']['verdict']}."]
    lines += ["", "## Latency", "", "| stage | frames | median | p95 |", "|---|---:|---:|---:|"]
    for name, lat in s["latency_ms"].items():
        lines.append(f"| {name} | {lat['count']} | {fmt(lat['median_ms'], '.2f', ' ms')} | "
                     f"{fmt(lat['p95_ms'], '.2f', ' ms')} |")
    lines += [""] + fusion_markdown(s.get("fusion")) + refinement_markdown(s.get("refinement"))
    lines += ["## Plots", "", "![error CDF](error_cdf.png)", "",
              "![trajectory](trajectory.png)", "", "![error over time](error_time.png)", ""]
    return "\n".join(lines)


def frames_csv(result: ReplayResult) -> str:
    """One row per read frame: stamp, status, estimate, ground truth, error, NEES, timings."""
    tree = result.tree
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["index", "stamp_ns", "frame_id", "skip", "status", "latitude", "longitude",
                     "sigma_east_m", "sigma_north_m", "confidence", "gt_latitude",
                     "gt_longitude", "error_m", "nees", "decode_ms", "localize_ms", "detail",
                     "refined", "refinement"])
    for r in result.records:
        row: list[Any] = [r.index, r.stamp_ns, r.frame_id, r.skip]
        if r.fix is not None:
            row += [r.fix.status.name, f"{r.fix.latitude:.8f}", f"{r.fix.longitude:.8f}",
                    f"{r.fix.sigma_en_m[0]:.2f}", f"{r.fix.sigma_en_m[1]:.2f}",
                    f"{r.fix.confidence:.4f}"]
        else:
            row += [""] * 6
        if r.gt is not None:
            row += [f"{r.gt.latitude:.8f}", f"{r.gt.longitude:.8f}"]
        else:
            row += ["", ""]
        if r.fix is not None and r.gt is not None:
            err = np.subtract(tree.to_local(r.fix.latitude, r.fix.longitude),
                              (r.gt.east_m, r.gt.north_m))
            nees = float(nees_2d(err[None], r.fix.covariance_enu[None, :2, :2])[0])
            row += [f"{float(np.hypot(*err)):.2f}", f"{nees:.3f}"]
        else:
            row += ["", ""]
        row += [f"{r.decode_ms:.2f}", f"{r.localize_ms:.2f}", r.detail]
        if r.fix is not None:
            row += [int(r.fix.refined), r.fix.refinement]
        else:
            row += ["", ""]
        writer.writerow(row)
    return out.getvalue()


def write_report(result: ReplayResult, out_dir: str | Path, pyramid: Any = None,
                 overwrite: bool = False, plots: bool = True,
                 extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """
    Write report.json, report.md, frames.csv and the PNG plots into ``out_dir``.

    Atomically: the directory appears complete or not at all. Returns the summary dict.
    ``extra`` adds entries to it (``baselines`` and ``calibration_check`` are rendered).
    """
    from jzi_ros.evaluation import plots as plotting

    summary = {**summarize(result, getattr(pyramid, "path", None)), **(extra or {})}
    with atomic_directory(out_dir, overwrite=overwrite) as tmp:
        write_json(tmp / REPORT_JSON, summary)
        with atomic_open(tmp / REPORT_MD, "w", encoding="utf-8") as handle:
            handle.write(render_markdown(summary))
        with atomic_open(tmp / FRAMES_CSV, "w", encoding="utf-8", newline="") as handle:
            handle.write(frames_csv(result))
        if plots:
            plotting.write_plots(result, score(result), tmp, pyramid)
    return summary
