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

"""jzi localize / jzi localize --calibrate / jzi bench on a tiny synthetic map."""
import json

import cv2
import numpy as np
import pytest

from jzi_ros.cli.main import main
from jzi_ros.model.checkpoint import read_header
from jzi_ros.training.manifest import Sample, write_manifest
from replay_support import BagSpec, T0, write_bag
from support import make_tiny_checkpoint, make_tiny_map, world_of


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    pyramid = make_tiny_map(tmp, depth=2)
    ckpt = make_tiny_checkpoint(tmp, pyramid, sharpen=True)
    world, tree = world_of(pyramid), pyramid.tree
    rng = np.random.default_rng(0)
    samples = []
    for index in range(12):
        east, north = rng.uniform(-700, 700, 2)
        image = tmp / f"frame{index}.png"
        cv2.imwrite(str(image), world.ground_image(east, north, size=(40, 80))[..., ::-1])
        lat, lon = tree.to_latlon(east, north)
        samples.append(Sample(image, float(lat), float(lon),
                              split="val" if index % 2 else "train"))
    manifest = tmp / "manifest.csv"
    write_manifest(manifest, samples)
    return pyramid, ckpt, samples, manifest


def test_localize_prints_text_and_json(scene, capsys):
    pyramid, ckpt, samples, _ = scene
    common = ["--map", str(pyramid.path), "--model", str(ckpt), "--backend", "torch",
              "--device", "cpu", "--beam", "3"]
    assert main(["localize", str(samples[0].image), str(samples[1].image)] + common) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all(": FIX " in line for line in lines)
    assert main(["localize", str(samples[0].image), "--json"] + common) == 0
    fix = json.loads(capsys.readouterr().out)
    assert fix["status"] == "FIX" and len(fix["hypotheses"]) == 3
    assert len(fix["covariance_enu"]) == 9 and np.isfinite(fix["latitude"])
    # an unreadable file is reported, the others still run, exit code 1
    bad = pyramid.path.parent / "broken.png"
    bad.write_bytes(b"not a png")
    assert main(["localize", str(bad), str(samples[0].image)] + common) == 1
    captured = capsys.readouterr()
    assert "not a readable image" in captured.err and ": FIX " in captured.out


def test_localize_mismatch_is_a_one_line_error(scene, tmp_path, capsys):
    _, ckpt, _, _ = scene
    other = make_tiny_map(tmp_path, depth=3)
    code = main(["localize", "x.png", "--map", str(other.path), "--model", str(ckpt)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "depth" in err


def test_calibrate_stores_the_scale_in_the_checkpoint(scene, capsys):
    pyramid, ckpt, _, manifest = scene
    args = ["localize", "--map", str(pyramid.path), "--model", str(ckpt), "--backend",
            "torch", "--device", "cpu", "--calibrate", str(manifest)]
    assert main(args + ["--dry-run"]) == 0
    assert "calibration" not in read_header(ckpt)["metadata"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "scale" in out and "stored in" in out
    stored = read_header(ckpt)["metadata"]["calibration"]
    assert stored["frames"] == 6 and stored["mean_nees"] == pytest.approx(2.0, rel=1e-2)
    assert stored["beam_width"] == 4


def _flight(scene, tmp_path):
    """
    Write the scene's val frames as a flight: a bag and a manifest of the same frames.

    The bag has raw images, GT at the frame stamps and one corrupt frame; the manifest the
    same pixels (PNG) and positions.
    """
    import shutil

    pyramid, ckpt, samples, _ = scene
    val = [s for s in samples if s.split == "val"]
    images = [cv2.imread(str(s.image))[..., ::-1].copy() for s in val]
    frames = images[:3] + [None] + images[3:]  # a truncated message, with ground truth
    labels = val[:3] + val[2:3] + val[3:]
    stamps = [T0 + i * 10**9 for i in range(len(frames))]
    gt = [(t, s.latitude, s.longitude, 0) for t, s in zip(stamps, labels)]
    bag = write_bag(tmp_path / "flight", BagSpec(stamps, stamps, frames, gt))
    manifest = tmp_path / "same.csv"
    write_manifest(manifest, val)
    model = tmp_path / "model.safetensors"
    shutil.copy(ckpt, model)
    return pyramid, model, bag, manifest


def test_calibrate_on_a_bag_equals_the_same_frames_from_a_manifest(scene, tmp_path, capsys):
    pyramid, model, bag, manifest = _flight(scene, tmp_path)
    common = ["localize", "--map", str(pyramid.path), "--model", str(model), "--backend",
              "torch", "--device", "cpu", "--no-progress"]
    assert main(common + ["--calibrate", str(manifest)]) == 0
    from_manifest = read_header(model)["metadata"]["calibration"]
    assert main(common + ["--calibrate", str(bag), "--image-topic", "/camera/image",
                          "--gt-topic", "/gps/fix"]) == 0
    from_bag = read_header(model)["metadata"]["calibration"]
    assert from_bag["frames"] == from_manifest["frames"] == 6  # the corrupt frame is left out
    assert from_bag["covariance_scale"] == pytest.approx(from_manifest["covariance_scale"])
    # several sources are pooled
    assert main(common + ["--calibrate", str(bag), str(manifest), "--image-topic",
                          "/camera/image", "--gt-topic", "/gps/fix", "--dry-run"]) == 0
    assert "calibration on 12 frames" in capsys.readouterr().out


def test_calibrate_on_a_bag_needs_its_topics(scene, tmp_path, capsys):
    pyramid, model, bag, _ = _flight(scene, tmp_path)
    code = main(["localize", "--map", str(pyramid.path), "--model", str(model), "--backend",
                 "torch", "--device", "cpu", "--calibrate", str(bag), "--gt-topic", "/gps/fix"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--image-topic" in err
    code = main(["localize", "--map", str(pyramid.path), "--model", str(model), "--backend",
                 "torch", "--device", "cpu", "--calibrate", str(bag), "--image-topic", "/nope",
                 "--gt-topic", "/gps/fix"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "/nope" in err and "metadata 'calibration'" not in err


def test_bench_writes_the_json_keys(scene, tmp_path, capsys):
    pyramid, ckpt, _, manifest = scene
    out = tmp_path / "bench.json"
    assert main(["bench", "--map", str(pyramid.path), "--model", str(ckpt), "--backend",
                 "torch", "--device", "cpu", "--frames", "3", "--warmup", "1", "--beam", "1",
                 "2", "--manifest", str(manifest), "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [r["beam_width"] for r in rows] == [1, 2]
    for row in rows:
        assert {"backend", "device", "dtype", "encoder_ms", "frame_ms", "paper_way_ms"} <= set(row)
        for key in ("encoder_ms", "frame_ms", "paper_way_ms"):
            assert row[key]["median"] > 0 and row[key]["p95"] >= row[key]["median"]
        assert row["accuracy"]["frames"] == 6
        recall = [row["accuracy"][f"recall@{d}m"] for d in (25, 50, 100, 250)]
        assert all(0.0 <= r <= 1.0 for r in recall) and recall == sorted(recall)
        cells = [f["terminal_cells"] for f in row["fusion_filter"]]
        assert cells == [pyramid.tree.num_actions ** pyramid.tree.depth, 65536]
        assert all(f["median"] > 0 and f["encoder_cpu_median"] > 0 for f in row["fusion_filter"])
        # also timed right after the encoder alone (a harsher order than the node's)
        assert all(f["after_encoder_only"]["cpu_median"] > 0 for f in row["fusion_filter"])
        visual = row["visual_odometry"]  # every moved pair of the bench frame matches
        assert visual["median"] > 0 and visual["encoder_cpu_median"] > 0
        assert visual["matched"] == visual["tried"] == 219  # 220 frames, 20 of them warm-up
        assert row["graph"] == "jit"  # the torch CPU default: traced and frozen
        stages = row["frame_stages_ms"]  # the frame's own split, from the same frames
        assert {"preprocess", "encode", "decode", "posterior"} <= set(stages)
        assert sum(stages.values()) <= row["frame_ms"]["p95"] * 1.5
        assert row["measured_ms"]["median"] > 0 and row["seeded_ms"]["median"] > 0
        assert row["cpu_ms"]["frame"]["median"] > 0  # one thread (the default): CPU time too
    printed = capsys.readouterr().out
    assert "| torch (jit) | cpu | fp32 | 2 |" in printed and "temporal filter" in printed
    assert "visual odometry (fusion.visual_odometry, 640 x 480 frames)" in printed
    assert "frame / encode inside it" in printed and "with the seeded zoom" in printed
    assert "each filter frame follows one timed CPU encoder pass and the frame's own" in printed
    assert "| R@25 m | R@50 m | R@100 m | R@250 m | mean NEES |" in printed


def test_bench_accuracy_is_recall_within_metres_and_passes_the_heading():
    from types import SimpleNamespace

    from jzi_ros.geo import CellTree
    from jzi_ros.inference.bench import accuracy

    tree = CellTree(38.9, -77.03, 1600.0, grid=4, depth=2)
    seen = []

    def localize(image, heading_deg=None):  # a fix 30 m east of the origin, sigma 30 m
        seen.append(heading_deg)
        return SimpleNamespace(east_m=30.0, north_m=0.0, covariance_enu=np.eye(3) * 900.0)

    localizer = SimpleNamespace(tree=tree, localize=localize)
    frames = [(None, *tree.to_latlon(east, 0.0), heading)
              for east, heading in ((30.0, 10.0), (0.0, 20.0), (-69.0, 30.0), (330.0, 40.0))]
    result = accuracy(localizer, frames, (25.0, 50.0, 100.0, 250.0))
    # errors 0, 30, 99 and 300 m
    assert [result[f"recall@{d}m"] for d in (25, 50, 100, 250)] == [0.25, 0.5, 0.75, 0.75]
    assert result["median_error_m"] == pytest.approx(64.5, abs=0.01)
    assert seen == [10.0, 20.0, 30.0, 40.0]


def test_round_robin_interleaves_the_calls_and_times_each_after_the_warmup():
    from jzi_ros.inference.bench import round_robin

    order = []

    def busy():  # ~a millisecond of this thread's CPU
        order.append("busy")
        np.linalg.svd(np.random.default_rng(0).normal(size=(120, 120)))

    def busy_at_first():  # three times as busy, in the two warm-up rounds only
        order.append("first")
        if order.count("first") <= 2:
            busy(), busy(), busy()

    timed = round_robin({"idle": lambda: order.append("idle"), "busy": busy,
                         "first": busy_at_first}, 6, 2)
    assert [name for name in order if name != "busy"][:3] == ["idle", "first", "idle"]
    assert order.count("idle") == 6 and order.count("first") == 6
    assert set(timed) == {"idle", "busy", "first"} and set(timed["busy"]) == {"median", "p95"}
    assert timed["busy"]["median"] > timed["idle"]["median"] >= 0.0
    assert timed["first"]["p95"] < timed["busy"]["median"]  # the warm-up is not counted
