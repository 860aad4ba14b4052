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
Replay + report against numbers the test computes on its own.

The localizer here is a test double that reads the frame index from the image and answers
truth + a known offset (truth = np.interp of the GT track, computed in the test), so every
error, recall, path accuracy, NEES and latency in the report has an independent expected value.
"""
import csv
import json

import numpy as np
import pytest

from jzi_ros.errors import JziError
from jzi_ros.evaluation.metrics import CHI2_2D_1SIGMA, CHI2_2D_2SIGMA
from jzi_ros.evaluation.replay import (replay_bag, ReplayOptions, SKIP_BAD_IMAGE, SKIP_CORRUPT,
                                       SKIP_GT_OUTSIDE, SKIP_NO_GT)
from jzi_ros.evaluation.report import summarize, write_report
from replay_support import IndexLocalizer, offsets_for, standard_spec, write_bag
from support import tiny_tree

N = 24
CORRUPT, BAD, NO_FIX = 7, 9, (5, 13)
SIGMA = 30.0


def _options(**kw):
    return ReplayOptions("/camera/image", "/gps/fix", progress=False, **kw)


def _expected(loc, indices):
    """Independent metrics over ``indices`` (frames the localizer answered)."""
    tree = loc.tree
    truth = np.array([loc.truth(i) for i in indices])
    est = np.array([loc.estimate(i) for i in indices])
    top = np.array([tree.cell_center_local(tree.path_of_local(*e)) for e in est])
    is_fix = np.array([i not in loc.no_fix for i in indices])
    err = np.hypot(*(est - truth).T)
    top_err = np.hypot(*(top - truth).T)
    d = est - truth
    nees = (d[:, 0] / SIGMA) ** 2 + (d[:, 1] / (2 * SIGMA)) ** 2
    gt_paths = [tree.path_of_local(*t) for t in truth]
    pred_paths = [tree.path_of_local(*e) for e in est]
    path_acc = {str(level): np.mean([p[:level] == g[:level] for p, g in zip(pred_paths, gt_paths)])
                for level in range(1, tree.depth + 1)}
    return err, top_err, is_fix, nees, path_acc


@pytest.mark.parametrize("storage,kind", [("sqlite3", "raw"), ("mcap", "png")])
def test_report_numbers_match_independent_computation(tmp_path, storage, kind):
    tree = tiny_tree()
    spec = standard_spec(tree, N, kind=kind, corrupt=(CORRUPT,))
    bag = write_bag(tmp_path / "bag", spec, storage)
    loc = IndexLocalizer(tree, spec, offsets_for(N), SIGMA, no_fix=NO_FIX, bad=(BAD,))
    result = replay_bag(bag, loc, _options())
    # every decodable frame reached the localizer once, in header-stamp order (3/4 swapped)
    assert loc.calls == [i for i in range(N) if i != CORRUPT]
    summary = write_report(result, tmp_path / "report")
    used = [i for i in range(N) if i not in (CORRUPT, BAD)]
    err, top_err, is_fix, nees, path_acc = _expected(loc, used)

    frames = summary["frames"]
    assert (frames["in_bag"], frames["selected"], frames["read"]) == (N, N, N)
    assert (frames["localized"], frames["used"]) == (N - 2, N - 2)
    assert frames["skipped"] == {SKIP_CORRUPT: 1, SKIP_BAD_IMAGE: 1}
    assert summary["ground_truth"]["no_fix"] == 1
    assert summary["fix_rate"] == pytest.approx(1 - len(NO_FIX) / (N - 2))
    fix_err = err[is_fix]
    block = summary["fix"]
    assert block["count"] == len(fix_err)
    assert block["median_m"] == pytest.approx(np.median(fix_err), abs=1e-3)
    assert block["mean_m"] == pytest.approx(np.mean(fix_err), abs=1e-3)
    assert block["p95_m"] == pytest.approx(np.percentile(fix_err, 95), abs=1e-3)
    for d in (25, 50, 100, 250):
        assert block["recall"][str(d)] == pytest.approx(np.mean(fix_err <= d))
        assert summary["top1"]["recall"][str(d)] == pytest.approx(np.mean(top_err <= d))
    assert summary["top1"]["count"] == N - 2
    assert summary["top1"]["median_m"] == pytest.approx(np.median(top_err), abs=1e-3)
    assert 0 < block["recall"]["100"] < 1  # the offsets make the test discriminating
    assert summary["path_accuracy"] == pytest.approx(path_acc)
    cal = summary["calibration"]
    assert cal["count"] == len(fix_err)
    assert cal["mean_nees"] == pytest.approx(np.mean(nees[is_fix]), rel=1e-4)
    assert cal["inside_1sigma"] == pytest.approx(np.mean(nees[is_fix] <= CHI2_2D_1SIGMA))
    assert cal["inside_2sigma"] == pytest.approx(np.mean(nees[is_fix] <= CHI2_2D_2SIGMA))
    enc = summary["latency_ms"]["localizer.encoder"]
    assert enc["median_ms"] == pytest.approx(np.median([1.0 + i for i in used]))
    assert enc["p95_ms"] == pytest.approx(np.percentile([1.0 + i for i in used], 95))
    assert summary["latency_ms"]["localize"]["count"] == N - 2

    out = tmp_path / "report"
    assert json.loads((out / "report.json").read_text())["fix"] == block
    md = (out / "report.md").read_text()
    assert "| 1 | " in md and "R@250 m" in md and "mean NEES" in md
    rows = list(csv.DictReader((out / "frames.csv").open()))
    assert len(rows) == N and rows[CORRUPT]["skip"] == SKIP_CORRUPT
    by_index = {int(r["index"]): r for r in rows}
    assert float(by_index[0]["error_m"]) == pytest.approx(err[0], abs=0.01)
    for name in ("error_cdf.png", "trajectory.png", "error_time.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_limit_and_window_select_frames(tmp_path):
    tree = tiny_tree()
    spec = standard_spec(tree, N, corrupt=(), swap=None)
    bag = write_bag(tmp_path / "bag", spec)
    loc = IndexLocalizer(tree, spec, {})
    result = replay_bag(bag, loc, _options(every=3, limit=4))
    assert loc.calls == [0, 3, 6, 9] and result.frames_selected == 4
    loc.calls.clear()
    replay_bag(bag, loc, _options(start_s=1.0, duration_s=1.0))  # 5 Hz: frames 5..9
    assert loc.calls == [5, 6, 7, 8, 9]
    summary = summarize(replay_bag(bag, IndexLocalizer(tree, spec, {}), _options(limit=3)))
    assert summary["fix"]["median_m"] == pytest.approx(0.0, abs=1e-3)  # zero offsets
    with pytest.raises(JziError, match="--every"):
        replay_bag(bag, loc, _options(every=0))


def test_gt_tolerance_and_outside_map_skip_but_still_localize(tmp_path):
    tree = tiny_tree(size_m=500.0)  # the track starts 300 m west: outside for t < 2 s
    spec = standard_spec(tree, N, corrupt=(), swap=None)
    del spec.gt[4:8]  # a 2 s GT gap around t = 1.7..3.2 s
    bag = write_bag(tmp_path / "bag", spec)
    loc = IndexLocalizer(tree, spec, {})
    result = replay_bag(bag, loc, _options(gt_tolerance_s=0.5))
    skips = {r.index: r.skip for r in result.records if r.skip}
    assert set(skips.values()) == {SKIP_GT_OUTSIDE, SKIP_NO_GT}
    assert len(result.localized) == N  # skipped for scoring, still localized (output bag)
    for r in result.records:
        t = (r.stamp_ns - spec.image_stamps[0]) / 1e9
        gt_t = sorted((s - spec.image_stamps[0]) / 1e9 for s, *_, st in spec.gt if st >= 0)
        before = max((g for g in gt_t if g <= t), default=-99)
        after = min((g for g in gt_t if g >= t), default=99)
        if min(t - before, after - t) > 0.5:
            assert r.skip == SKIP_NO_GT, r
        elif r.skip != SKIP_NO_GT:
            assert (abs(r.gt.east_m) > 250) == (r.skip == SKIP_GT_OUTSIDE)


def test_no_overlap_and_missing_topic_are_errors(tmp_path):
    tree = tiny_tree()
    spec = standard_spec(tree, 6, corrupt=(), swap=None)
    spec.gt = [(s + 100 * 10**9, a, o, st) for s, a, o, st in spec.gt]
    bag = write_bag(tmp_path / "bag", spec)
    loc = IndexLocalizer(tree, spec, {})
    with pytest.raises(JziError, match="no selected image on /camera/image has a ground-truth"):
        replay_bag(bag, loc, _options())
    with pytest.raises(JziError, match="no topic '/gps'.*the bag has: /camera/image"):
        replay_bag(bag, loc, ReplayOptions("/camera/image", "/gps", progress=False))
    assert loc.calls == []  # nothing was localized before the errors


def test_ctrl_c_returns_the_partial_result(tmp_path):
    tree = tiny_tree()
    spec = standard_spec(tree, N, corrupt=(), swap=None)
    bag = write_bag(tmp_path / "bag", spec)
    loc = IndexLocalizer(tree, spec, offsets_for(N), interrupt_at=6)
    result = replay_bag(bag, loc, _options())
    assert result.interrupted and len(result.records) == 6
    summary = write_report(result, tmp_path / "partial", plots=False)
    assert summary["interrupted"] and summary["frames"]["read"] == 6
    assert "Interrupted" in (tmp_path / "partial" / "report.md").read_text()
    with pytest.raises(JziError, match="already exists"):
        write_report(result, tmp_path / "partial", plots=False)


def test_report_with_no_fix_frames_and_with_nothing_scored(tmp_path):
    tree = tiny_tree()
    spec = standard_spec(tree, 6, corrupt=(), swap=None)
    bag = write_bag(tmp_path / "bag", spec)
    loc = IndexLocalizer(tree, spec, offsets_for(6), no_fix=range(6))
    summary = write_report(replay_bag(bag, loc, _options()), tmp_path / "nofix")
    assert summary["fix_rate"] == 0.0 and summary["fix"]["count"] == 0
    assert summary["calibration"]["count"] == 0 and summary["top1"]["count"] == 6
    # no FIX frame: no median, no NEES, no recall (a 0.0 m median would read as perfect)
    assert summary["fix"]["median_m"] is None and summary["fix"]["p95_m"] is None
    assert set(summary["fix"]["recall"].values()) == {None}
    assert summary["calibration"]["mean_nees"] is None
    text = (tmp_path / "nofix" / "report.md").read_text()
    fix_row = next(line for line in text.splitlines() if line.startswith("| published fix"))
    assert "0.0 m" not in fix_row and "\u2014" in fix_row
    assert "| mean NEES | \u2014 |" in text
    assert json.loads((tmp_path / "nofix" / "report.json").read_text())["fix"]["median_m"] is None
    empty = replay_bag(bag, IndexLocalizer(tree, spec, {}, interrupt_at=0), _options())
    summary = write_report(empty, tmp_path / "empty")
    assert summary["frames"]["read"] == 0 and summary["top1"]["count"] == 0
    assert summary["path_accuracy"] == {"1": None, "2": None}
    assert summary["fix_rate"] is None and summary["top1"]["median_m"] is None
    assert (tmp_path / "empty" / "trajectory.png").stat().st_size > 0


class RefiningIndexLocalizer(IndexLocalizer):
    """IndexLocalizer whose frames in ``refined`` are refined fixes, the others say why not."""

    def __init__(self, *args, refined=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.refined = set(refined)

    def localize(self, image_rgb):
        from dataclasses import replace

        fix = super().localize(image_rgb)
        index = self.calls[-1]
        if index in self.refined:
            return replace(fix, refined=True, refinement="refined: 90/100 inliers, height 200 "
                           "m, heading 10 deg, tilt 3 deg, sigma 1.0 m",
                           timings_ms={**fix.timings_ms, "refine": 10.0 + index})
        why = "7 inliers (need 25)" if index % 2 else "the frame has 3 features (need 25)"
        return replace(fix, refinement=f"not refined: {why}; 12 inliers (need 25)",
                       timings_ms={**fix.timings_ms, "refine": 10.0 + index})


def test_report_counts_refinement_acceptance_and_false_acceptances(tmp_path):
    tree = tiny_tree()
    spec = standard_spec(tree, N, corrupt=(), swap=None)
    bag = write_bag(tmp_path / "bag", spec)
    refined = {i for i in range(N) if i % 3 == 0}
    loc = RefiningIndexLocalizer(tree, spec, offsets_for(N), SIGMA, refined=refined)
    summary = write_report(replay_bag(bag, loc, _options()), tmp_path / "report")
    err = np.array([np.hypot(*np.subtract(loc.estimate(i), loc.truth(i))) for i in range(N)])
    accepted = np.array(sorted(refined))
    block = summary["refinement"]
    assert block["frames"] == N and block["accepted"] == len(refined)
    assert block["acceptance_rate"] == pytest.approx(len(refined) / N)
    assert block["accepted_median_m"] == pytest.approx(np.median(err[accepted]), abs=1e-3)
    false = int(np.sum(err[accepted] > 50.0))
    assert 0 < false < len(refined)  # the offsets make the count discriminating
    assert block["false_acceptances"] == false
    assert block["false_acceptance_rate"] == pytest.approx(false / N)
    assert block["refine_ms_median"] == pytest.approx(np.median(10.0 + np.arange(N)))
    odd = sum(1 for i in range(N) if i not in refined and i % 2)
    assert block["not_refined"] == {"N inliers (need N)": odd,
                                    "the frame has N features (need N)": N - len(refined) - odd}
    out = tmp_path / "report"
    assert json.loads((out / "report.json").read_text())["refinement"] == block
    assert "## Refinement" in (out / "report.md").read_text()
    rows = {int(r["index"]): r for r in csv.DictReader((out / "frames.csv").open())}
    assert rows[0]["refined"] == "1" and rows[0]["refinement"].startswith("refined: 90/100")
    assert rows[1]["refined"] == "0" and rows[1]["refinement"].startswith("not refined: 7")
    # the zoom alone: no refinement block, empty refinement column
    plain = write_report(replay_bag(bag, IndexLocalizer(tree, spec, offsets_for(N)),
                                    _options()), tmp_path / "plain")
    assert plain["refinement"] is None
    assert "## Refinement" not in (tmp_path / "plain" / "report.md").read_text()
