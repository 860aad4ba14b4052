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

"""Tracked refinement: a registered frame's map matches followed into the next frames."""
from __future__ import annotations

from dataclasses import replace
import math

import numpy as np
import pytest
from test_refine import build, CONFIG, intrinsics, texture, view, zoom_fix

from jzi_ros.errors import JziError
from jzi_ros.inference.refine import RefineConfig, Refiner, RefiningLocalizer
from jzi_ros.inference.refine_tracking import sequence_options, spread_out
from jzi_ros.training.camera import CameraPose

SECOND = 10 ** 9


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """(map dir, source image): test_refine's textured map with imagery and features."""
    image = texture(800)
    return build(tmp_path_factory.mktemp("tracking"), image, "map"), image


def flight(count: int, step_m: float = 9.0, seed: int = 0) -> list[CameraPose]:
    """Return a straight pass at 150 m, the heading wobbling a few degrees per frame."""
    rng = np.random.default_rng(seed)
    return [CameraPose(-40.0 + step_m * i, 20.0 - 0.5 * step_m * i, 150.0,
                       heading_deg=20.0 + float(rng.uniform(-3, 3)), pitch_deg=87.0)
            for i in range(count)]


def counting_refiner(map_dir, monkeypatch, **fields) -> tuple[Refiner, list]:
    """Return a refiner and a list that grows by one per SIFT detection on a frame."""
    calls: list[int] = []
    from jzi_ros.inference import refine

    original = refine.frame_features
    monkeypatch.setattr(refine, "frame_features",
                        lambda image, config: (calls.append(1), original(image, config))[1])
    return Refiner.for_map(map_dir, replace(CONFIG, **fields)), calls


def test_a_sequence_is_tracked_between_sift_frames_and_stays_accurate(world, monkeypatch):
    map_dir, image = world
    refiner, sift = counting_refiner(map_dir, monkeypatch, track_frames=4)
    poses = flight(10)
    notes, errors, sigmas = [], [], []
    for i, pose in enumerate(poses):
        fix = refiner.refine(view(image, pose), zoom_fix(pose.east_m, pose.north_m),
                             intrinsics(), stamp_ns=(i + 1) * SECOND)
        assert fix.refined, (i, fix.refinement)
        notes.append(fix.refinement)
        errors.append(math.hypot(fix.east_m - pose.east_m, fix.north_m - pose.north_m))
        sigmas.append(math.sqrt(fix.covariance_enu[0, 0]))
    tracked = ["(tracked" in note for note in notes]
    # SIFT on the first frame, then 4 tracked, SIFT again (track_frames), 4 tracked, SIFT
    assert tracked == [False, True, True, True, True, False, True, True, True, True]
    assert len(sift) == 2
    assert "(tracked 4 after SIFT)" in notes[4], notes[4]
    assert max(errors) < 3.0, errors
    # the tracked fixes carry the fitted scale on their covariance: never below the floor's
    floor = CONFIG.sigma_floor_m * math.sqrt(CONFIG.track_covariance_scale)
    assert all(s >= floor - 1e-9 for s, t in zip(sigmas, tracked) if t)
    assert all(np.isfinite(sigmas))


def test_without_tracking_or_without_stamps_every_frame_runs_sift(world, monkeypatch):
    map_dir, image = world
    poses = flight(4)
    for fields, stamped in (({"track_frames": 0}, True), ({"track_frames": 5}, False)):
        refiner, sift = counting_refiner(map_dir, monkeypatch, **fields)
        for i, pose in enumerate(poses):
            stamp = {"stamp_ns": (i + 1) * SECOND} if stamped else {}
            fix = refiner.refine(view(image, pose), zoom_fix(pose.east_m, pose.north_m),
                                 intrinsics(), **stamp)
            assert fix.refined and "tracked" not in fix.refinement, fix.refinement
        assert len(sift) == len(poses)
        monkeypatch.undo()


@pytest.mark.parametrize("case", ["gap", "backwards", "same stamp", "resized"])
def test_a_break_in_the_sequence_detects_again(world, monkeypatch, case):
    map_dir, image = world
    refiner, sift = counting_refiner(map_dir, monkeypatch, track_frames=10)
    first, second = flight(2)
    refiner.refine(view(image, first), zoom_fix(first.east_m, first.north_m), intrinsics(),
                   stamp_ns=10 * SECOND)
    stamp = {"gap": 13 * SECOND, "backwards": 9 * SECOND, "same stamp": 10 * SECOND,
             "resized": 11 * SECOND}[case]
    frame = view(image, second)
    K = intrinsics()
    if case == "resized":  # a new camera size: the keyframe's pixels mean nothing here
        import cv2
        frame = cv2.resize(frame, (240, 180), interpolation=cv2.INTER_AREA)
        K = K.scaled(0.75)
    fix = refiner.refine(frame, zoom_fix(second.east_m, second.north_m), K, stamp_ns=stamp)
    assert fix.refined and "tracked" not in fix.refinement, fix.refinement
    assert len(sift) == 2


def test_an_unstamped_frame_leaves_the_sequence_alone(world, monkeypatch):
    map_dir, image = world
    refiner, sift = counting_refiner(map_dir, monkeypatch, track_frames=10)
    a, b, c = flight(3)
    refiner.refine(view(image, a), zoom_fix(a.east_m, a.north_m), intrinsics(),
                   stamp_ns=SECOND)
    # e.g. a seeded zoom's extra pass over the frame: registered, but not part of the sequence
    refiner.refine(view(image, c), zoom_fix(c.east_m, c.north_m), intrinsics())
    fix = refiner.refine(view(image, b), zoom_fix(b.east_m, b.north_m), intrinsics(),
                         stamp_ns=2 * SECOND)
    assert "(tracked 1 after SIFT)" in fix.refinement, fix.refinement
    assert len(sift) == 2


def test_a_frame_tracking_cannot_hold_falls_back_to_sift_or_keeps_the_zoom_fix(
        world, monkeypatch):
    map_dir, image = world
    refiner, sift = counting_refiner(map_dir, monkeypatch, track_frames=10)
    near = flight(1)[0]
    far = CameraPose(150.0, -180.0, 150.0, heading_deg=200.0, pitch_deg=88.0)
    refiner.refine(view(image, near), zoom_fix(near.east_m, near.north_m), intrinsics(),
                   stamp_ns=SECOND)
    # somewhere else entirely (the tracks find nothing): SIFT registers it where it is
    fix = refiner.refine(view(image, far), zoom_fix(far.east_m, far.north_m), intrinsics(),
                         stamp_ns=2 * SECOND)
    assert fix.refined and "tracked" not in fix.refinement, fix.refinement
    assert math.hypot(fix.east_m - far.east_m, fix.north_m - far.north_m) < 3.0
    # a blank frame after it: neither tracking nor SIFT, the zoom's fix with both reasons
    zoom = zoom_fix(far.east_m, far.north_m)
    blank = refiner.refine(np.zeros((240, 320, 3), np.uint8), zoom, intrinsics(),
                           stamp_ns=3 * SECOND)
    assert not blank.refined and (blank.east_m, blank.north_m) == (zoom.east_m, zoom.north_m)
    assert "tracked:" in blank.refinement and "0 features" in blank.refinement, \
        blank.refinement
    assert np.all(np.isfinite(blank.covariance_enu))
    assert len(sift) == 3


def test_tracking_keeps_the_acceptance_test_the_nadir_must_be_in_the_searched_cells(
        world, monkeypatch):
    map_dir, image = world
    refiner, sift = counting_refiner(map_dir, monkeypatch, track_frames=10)
    a, b = flight(2)
    refiner.refine(view(image, a), zoom_fix(a.east_m, a.north_m), intrinsics(),
                   stamp_ns=SECOND)
    # the zoom now says the frame is 500 m away: the tracked pose is outside its cells
    wrong = zoom_fix(b.east_m + 250.0, b.north_m - 250.0)
    fix = refiner.refine(view(image, b), wrong, intrinsics(), stamp_ns=2 * SECOND)
    assert not fix.refined, fix.refinement
    assert "tracked: nadir point outside the searched cells" in fix.refinement


def test_spread_out_takes_each_grid_cell_in_turn():
    rng = np.random.default_rng(0)
    crowded = rng.uniform([0, 0], [40, 30], (300, 2))  # all in the top-left cell
    rest = np.array([[60.0 + 80 * (k % 4), 45.0 + 60 * (k // 4)] for k in range(16)])[1:]
    points = np.vstack([crowded, rest]).astype(np.float32)
    chosen = spread_out(points, (240, 320), 40)
    assert len(chosen) == 40 and len(set(chosen.tolist())) == 40
    assert set(range(300, 315)) <= set(chosen.tolist())  # every lone point is taken
    np.testing.assert_array_equal(spread_out(points[:30], (240, 320), 40), np.arange(30))


def test_track_options_from_the_cli_and_the_node_parameter():
    import argparse

    from jzi_ros.cli import refineopts
    from jzi_ros.ros.params import refine_config

    parser = argparse.ArgumentParser()
    refineopts.add_arguments(parser)
    assert refineopts.refine_config(parser.parse_args([])).track_frames == 0
    assert refineopts.refine_config(parser.parse_args(["--refine-track", "7"])).track_frames == 7
    assert refine_config({}).track_frames == 0
    assert refine_config({"refine.track_frames": 3}).track_frames == 3
    with pytest.raises(JziError, match="refine.track_frames"):
        refineopts.refine_config(parser.parse_args(["--refine-track", "-1"]))
    with pytest.raises(JziError, match="refine.track_check_px"):
        RefineConfig(track_check_px=-1.0)


def test_sequence_options_ask_for_the_stamp_only_where_tracking_uses_it(world):
    map_dir, _ = world

    class Zoom:
        tree = None
        backend_name = "zoom"

    assert sequence_options(Zoom(), 5) == {}
    plain = RefiningLocalizer(Zoom(), Refiner.for_map(map_dir, CONFIG))
    assert sequence_options(plain, 5) == {}
    tracking = RefiningLocalizer(Zoom(), Refiner.for_map(map_dir,
                                                         replace(CONFIG, track_frames=3)))
    assert sequence_options(tracking, 5) == {"stamp_ns": 5}


def test_replay_tracks_between_sift_frames_and_reports_how_many(world, tmp_path, capsys):
    """``jzi replay --method refine --refine-track N``: stamps make the frames a sequence."""
    import json

    from support import make_tiny_checkpoint
    from test_refine import source_to_local, TREE

    from jzi_ros.cli import main as jzi_main
    from jzi_ros.demo.bag import GT_TOPIC, IMAGE_TOPIC, write_bag
    from jzi_ros.maps.pyramid import MapPyramid
    from jzi_ros.training.camera import CameraModel, render_view

    map_dir, image = world
    ckpt = make_tiny_checkpoint(tmp_path, MapPyramid.open(map_dir))  # a random zoom
    camera = CameraModel(320, 240, 60.0)
    poses = [replace(p, altitude_m=200.0) for p in flight(8)]
    frames = [(1_700_000_000 * SECOND + i * SECOND,
               render_view(image, source_to_local(), camera, pose),
               (pose.east_m, pose.north_m, 200.0)) for i, pose in enumerate(poses)]
    bag = write_bag(tmp_path / "bag", TREE, frames)
    out = tmp_path / "report"
    rc = jzi_main.main(["replay", str(bag), "--map", str(map_dir), "--model", str(ckpt),
                        "--image-topic", IMAGE_TOPIC, "--gt-topic", GT_TOPIC, "--out", str(out),
                        "--no-progress", "--no-plots", "--backend", "torch", "--method",
                        "refine", "--hfov", "60", "--nominal-height", "400",
                        "--refine-track", "3"])
    assert rc == 0, capsys.readouterr().err
    block = json.loads((out / "report.json").read_text())["refinement"]
    # SIFT on frames 1 and 5, tracked 2-4 and 6-8 (the random zoom's cells span the map)
    assert block["accepted"] == 8 and block["tracked"] == 6, block
    assert block["accepted_median_m"] < 3.0
    assert "| of them tracked (no SIFT on the frame) | 6 |" in (out / "report.md").read_text()


def test_async_sift_never_runs_on_the_callers_thread_and_is_deterministic(world, monkeypatch):
    """``track_async``: SIFT in the background, the next frame tracks from its result."""
    import threading

    map_dir, image = world
    threads: list[str] = []
    from jzi_ros.inference import refine

    original = refine.frame_features
    monkeypatch.setattr(refine, "frame_features", lambda im, config: (
        threads.append(threading.current_thread().name), original(im, config))[1])
    poses = flight(9)
    runs = []
    for _ in range(2):
        refiner = Refiner.for_map(map_dir, replace(CONFIG, track_frames=3, track_async=True))
        notes, positions = [], []
        for i, pose in enumerate(poses):
            fix = refiner.refine(view(image, pose), zoom_fix(pose.east_m, pose.north_m),
                                 intrinsics(), stamp_ns=(i + 1) * SECOND)
            notes.append(fix.refinement)
            positions.append((fix.east_m, fix.north_m))
            if fix.refined:
                assert math.hypot(fix.east_m - pose.east_m, fix.north_m - pose.north_m) < 3.0
        refiner.close()
        runs.append(positions)
        # the first frame waits for nothing: the zoom's fix, SIFT started in the background;
        # then every frame tracked, the keyframe renewed in the background every 3 frames
        assert "runs in the background" in notes[0] and not notes[0].startswith("refined")
        assert ["(tracked" in n for n in notes[1:]] == [True] * 8, notes
        assert [n.split("(tracked ")[1].split(" ")[0] for n in notes[1:]] == \
            ["1", "2", "3", "1", "2", "3", "1", "2"]
    assert threads and all(name.startswith("jzi-refine") for name in threads), threads
    assert len(threads) == 2 * 3  # frames 1, 4 and 7 of each run
    assert runs[0] == runs[1]  # waiting for the background at the next frame: deterministic


def test_an_unstamped_frame_waits_for_the_background_and_keeps_its_result(world):
    map_dir, image = world
    refiner = Refiner.for_map(map_dir, replace(CONFIG, track_frames=3, track_async=True))
    a, b = flight(2)
    first = refiner.refine(view(image, a), zoom_fix(a.east_m, a.north_m), intrinsics(),
                           stamp_ns=SECOND)
    assert "runs in the background" in first.refinement
    pending = refiner.sequence._background[0]
    alone = refiner.refine(view(image, b), zoom_fix(b.east_m, b.north_m), intrinsics())
    assert pending.done() and alone.refined and "tracked" not in alone.refinement
    fix = refiner.refine(view(image, b), zoom_fix(b.east_m, b.north_m), intrinsics(),
                         stamp_ns=2 * SECOND)
    assert "(tracked 1 after SIFT)" in fix.refinement, fix.refinement
    refiner.close()


def test_realtime_async_never_waits_for_sift_and_takes_its_result_up_when_done(
        world, monkeypatch):
    """The node's mode: a frame never waits; the keyframe serves until its renewal is in."""
    import threading

    map_dir, image = world
    from jzi_ros.inference import refine

    gate = threading.Event()  # closed: the background SIFT is "still running"
    original = refine.frame_features

    def held(frame, config):
        assert gate.wait(timeout=30.0), "the test never opened the gate"
        return original(frame, config)

    monkeypatch.setattr(refine, "frame_features", held)
    refiner = Refiner.for_map(map_dir, replace(CONFIG, track_frames=2, track_async=True),
                              realtime=True)
    poses = flight(7, step_m=3.0)
    notes = []

    def frame(i):
        pose = poses[i]
        fix = refiner.refine(view(image, pose), zoom_fix(pose.east_m, pose.north_m),
                             intrinsics(), stamp_ns=(i + 1) * SECOND)
        notes.append(fix.refinement)
        if fix.refined:
            assert math.hypot(fix.east_m - pose.east_m, fix.north_m - pose.north_m) < 3.0
        return fix.refinement

    assert "runs in the background" in frame(0)
    # SIFT on frame 0 still running: frame 1 does not wait for it (it would block here)
    assert "still running in the background" in frame(1), notes
    gate.set()
    refiner.sequence.quiet()  # SIFT done; its result is taken up by the next frame
    assert "(tracked 1 after SIFT)" in frame(2), notes
    gate.clear()
    assert "(tracked 2 after SIFT)" in frame(3), notes  # and the renewal starts, held
    # past track_frames while the renewal runs: the old keyframe still serves
    assert "(tracked 3 after SIFT)" in frame(4), notes
    gate.set()
    refiner.sequence.quiet()
    assert "(tracked 1 after SIFT)" in frame(5), notes  # from the renewed keyframe
    assert "(tracked 2 after SIFT)" in frame(6), notes
    refiner.close()


def test_a_registration_taken_up_late_starts_its_points_where_the_map_puts_them_now(world):
    """Real time: SIFT's result is of an older frame; its points start in the latest one."""
    import cv2

    map_dir, image = world
    refiner = Refiner.for_map(map_dir, replace(CONFIG, track_frames=5))
    poses = flight(3)
    results = [refiner.register(view(image, pose), zoom_fix(pose.east_m, pose.north_m).hypotheses,
                                intrinsics(), stamp_ns=(i + 1) * SECOND)
               for i, pose in enumerate(poses)]
    assert [r.accepted for r in results] == [True] * 3 and "tracked 2" in results[2].scope
    tracker = refiner.sequence.tracker
    # frame 0's registration arrives now (as from the background): frames 1-2 came since
    tracker.start(view(image, poses[0]), results[0], intrinsics(), SECOND)
    kf = tracker.keyframe
    metres = cv2.perspectiveTransform(kf.targets.reshape(-1, 1, 2).astype(np.float64),
                                      kf.to_ground)
    # where frame 2's own SIFT registration (a fresh refiner) puts those map points
    fresh = Refiner.for_map(map_dir, CONFIG)
    alone = fresh.register(view(image, poses[2]),
                           zoom_fix(poses[2].east_m, poses[2].north_m).hypotheses, intrinsics())
    fresh.close()
    assert alone.accepted and not alone.scope
    to_pixels = np.linalg.inv(alone.to_ground @ alone.homography)
    truth = cv2.perspectiveTransform(metres, to_pixels).reshape(-1, 2)
    predicted = np.linalg.norm(kf.latest.reshape(-1, 2) - truth, axis=1)
    unmoved = np.linalg.norm(kf.points.reshape(-1, 2) - truth, axis=1)
    assert np.median(predicted) < 1.0 < 10.0 < np.median(unmoved), (predicted, unmoved)
    # without a later frame the points start where they were
    tracker.reset()
    tracker.start(view(image, poses[0]), results[0], intrinsics(), SECOND)
    assert np.array_equal(tracker.keyframe.latest, tracker.keyframe.points)
    refiner.close()


def test_async_needs_tracking_and_is_a_cli_flag_and_a_node_parameter():
    import argparse

    from jzi_ros.cli import refineopts
    from jzi_ros.ros.params import refine_config

    with pytest.raises(JziError, match="needs refine.track_frames > 0"):
        RefineConfig(track_async=True)
    parser = argparse.ArgumentParser()
    refineopts.add_arguments(parser)
    config = refineopts.refine_config(parser.parse_args(["--refine-track", "5",
                                                         "--refine-async"]))
    assert config.track_async and config.track_frames == 5
    with pytest.raises(JziError, match="--refine-async needs --refine-track"):
        refineopts.refine_config(parser.parse_args(["--refine-async"]))
    assert refine_config({"refine.track_frames": 2, "refine.track_async": True}).track_async


def test_tracking_flags_where_nothing_tracks_are_refused_in_one_line(capsys):
    from jzi_ros.cli import main as jzi_main

    common = ["--map", "m", "--model", "x", "--refine-track", "5"]
    assert jzi_main.main(["replay", "bag", "--image-topic", "/i", "--gt-topic", "/g",
                          "--out", "r", "--method", "classical", *common]) == 2
    assert "it needs --method refine or retrieval-refine (got --method classical)" in \
        capsys.readouterr().err
    assert jzi_main.main(["bench", *common]) == 2
    assert "--refine-track times refinement's tracking: add --refine" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # independent views: jzi evaluate has no such option
        jzi_main.main(["evaluate", "manifest.csv", *common])


@pytest.mark.parametrize("async_", [False, True], ids=["sync", "async"])
def test_bench_times_tracked_refinement_over_a_moving_pass(world, tmp_path, capsys, async_):
    from support import make_tiny_checkpoint

    from jzi_ros.cli import main as jzi_main
    from jzi_ros.maps.pyramid import MapPyramid

    map_dir, _ = world
    ckpt = make_tiny_checkpoint(tmp_path, MapPyramid.open(map_dir))
    args = ["bench", "--map", str(map_dir), "--model", str(ckpt), "--backend", "torch",
            "--device", "cpu", "--threads", "1", "--frames", "2", "--warmup", "1",
            "--no-paper-way", "--no-fusion", "--refine", "--hfov", "70", "--nominal-height",
            "400", "--refine-track", "5"] + (["--refine-async"] if async_ else [])
    assert jzi_main.main(args) == 0
    out = capsys.readouterr().out
    line = next(row for row in out.splitlines() if row.startswith("refinement over a"))
    assert "50-frame moving sequence" in line and "track_frames 5" in line, line
    tracked = int(line.split("): ")[1].split(" frames tracked")[0])
    assert tracked >= 30, line  # most frames of the pass are tracked
    assert ("SIFT on a background thread" in line) == async_
    assert ("SIFT " in line.split("thread CPU per frame")[1]) != async_, line


@pytest.mark.parametrize("where", ["foreground", "background"])
def test_a_failure_inside_refinement_keeps_the_zooms_fix_and_starts_again(
        world, monkeypatch, caplog, where):
    """Any exception in a registration (here a numpy one) costs the refinement, not the fix."""
    import logging

    from jzi_ros.inference import refine

    map_dir, image = world
    refiner = Refiner.for_map(map_dir, replace(CONFIG, track_frames=3,
                                               track_async=where == "background"))
    original = refine.frame_features
    broken = {"on": True}

    def features(image, config):
        if broken["on"]:
            raise np.linalg.LinAlgError("Singular matrix")
        return original(image, config)

    monkeypatch.setattr(refine, "frame_features", features)
    poses = flight(4)
    fixes = []
    with caplog.at_level(logging.ERROR):
        for i, pose in enumerate(poses):
            if i == 2:
                broken["on"] = False
            zoom = zoom_fix(pose.east_m, pose.north_m)
            fix = refiner.refine(view(image, pose), zoom, intrinsics(),
                                 stamp_ns=(i + 1) * SECOND)
            fixes.append(fix)
            if i < 2:  # nothing refined, the zoom's fix as it was
                assert not fix.refined
                assert (fix.latitude, fix.longitude) == (zoom.latitude, zoom.longitude)
    if where == "foreground":
        assert "refinement failed (LinAlgError: Singular matrix)" in fixes[0].refinement
    assert "LinAlgError" in caplog.text and "Traceback" in caplog.text
    # the failure is forgotten: the sequence starts again (in the background: a frame later)
    assert fixes[-1].refined or fixes[-2].refined, [f.refinement for f in fixes]
    refiner.close()
