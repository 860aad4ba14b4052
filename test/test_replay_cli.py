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
`jzi replay` / `ros2 run jzi_ros replay` end to end through the real Localizer and tiny model.

The expected numbers come from running the same Localizer on the same decoded images directly
and comparing its fixes with np.interp of the ground-truth track.
"""
import json

import cv2
import numpy as np
import pytest

from jzi_ros.cli import main as jzi_main
from jzi_ros.cli import replay as replay_cli
from jzi_ros.evaluation.bags import open_bag
from replay_support import BagSpec, gt_interp, image_message, NAVSAT, T0, track, write_bag
from support import make_tiny_checkpoint, make_tiny_map, world_of

N = 6
OPTION = {"backend": "--backend", "beam_width": "--beam", "position": "--position",
          "confidence_threshold": "--confidence-threshold"}


def _world_bag(tmp_path, pyramid, kind, storage):
    """Frames rendered by the map's synthetic world along a curved track, GT at 2 Hz."""
    tree = pyramid.tree
    world = world_of(pyramid)
    stamps = [T0 + int(i * 0.25e9) for i in range(N)]
    images = []
    for s in stamps:
        east, north = track((s - T0) / 1e9)
        images.append(world.ground_image(float(east), float(north)))
    gt_t = np.arange(-0.2, N * 0.25 + 0.5, 0.5)
    lat, lon = tree.to_latlon(*track(gt_t))
    gt = [(T0 + int(round(t * 1e9)), float(a), float(o), 0) for t, a, o in zip(gt_t, lat, lon)]
    spec = BagSpec(stamps, [s + 5_000_000 for s in stamps], images, gt, kind)
    return spec, write_bag(tmp_path / f"bag_{storage}", spec, storage)


def _decoded(image, kind):
    """Return what the replay feeds the localizer: the raw array, or the JPEG round trip."""
    if kind == "raw":
        return image
    msg = image_message(image, T0, kind)
    return cv2.cvtColor(cv2.imdecode(np.asarray(msg.data), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


@pytest.mark.slow
@pytest.mark.parametrize("kind,storage,config", [
    # torch backend: "auto" would export ONNX first (the localizer's tests cover that)
    ("raw", "sqlite3", {"backend": "torch"}),
    ("jpeg", "mcap", {"backend": "torch", "beam_width": 2, "position": "mean",
                      "confidence_threshold": 0.1})])
def test_jzi_replay_end_to_end(tmp_path, kind, storage, config):
    from jzi_ros.inference import localizer as localizer_mod

    pyramid = make_tiny_map(tmp_path)
    ckpt = make_tiny_checkpoint(tmp_path, pyramid)
    spec, bag = _world_bag(tmp_path, pyramid, kind, storage)
    out, out_bag = tmp_path / "report", tmp_path / "out_bag"
    rc = jzi_main.main(["replay", str(bag), "--map", str(pyramid.path), "--model", str(ckpt),
                        "--image-topic", "/camera/image", "--gt-topic", "/gps/fix",
                        "--out", str(out), "--no-progress", "--write-bag", str(out_bag)]
                       + [arg for name, value in config.items()
                          for arg in (OPTION[name], str(value))])
    assert rc == 0
    report = json.loads((out / "report.json").read_text())

    localizer = localizer_mod.Localizer.from_paths(
        pyramid.path, ckpt, localizer_mod.LocalizerConfig(**config))
    tree = localizer.tree
    fixes = [localizer.localize(_decoded(image, kind)) for image in spec.images]
    truth = np.array([gt_interp(spec, tree, s) for s in spec.image_stamps])
    est = np.array([tree.to_local(f.latitude, f.longitude) for f in fixes], float)
    err = np.hypot(*(est - truth).T)
    is_fix = np.array([f.ok for f in fixes])
    assert report["frames"]["used"] == N and report["frames"]["skipped"] == {}
    assert report["fix_rate"] == pytest.approx(is_fix.mean())
    assert report["fix"]["count"] == int(is_fix.sum())
    if is_fix.any():
        assert report["fix"]["median_m"] == pytest.approx(np.median(err[is_fix]), abs=0.01)
        for d in ("25", "50", "100", "250"):
            assert report["fix"]["recall"][d] == pytest.approx(np.mean(err[is_fix] <= float(d)))
    top = np.array([tree.cell_center_local(max(f.hypotheses, key=lambda h: h.probability).path)
                    if f.hypotheses else tree.to_local(f.latitude, f.longitude) for f in fixes])
    assert report["top1"]["mean_m"] == pytest.approx(np.hypot(*(top - truth).T).mean(), abs=0.01)
    assert report["backend"] == localizer.backend_name
    assert {"decode", "localize"} <= set(report["latency_ms"])

    with open_bag(out_bag) as reader:
        got = [reader.deserialize(raw, NAVSAT) for c, _, raw in reader.messages()
               if c.topic == "/jzi/fix"]
    assert [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in got] == \
        spec.image_stamps
    assert [m.latitude for m in got] == pytest.approx([f.latitude for f in fixes], abs=1e-9)


@pytest.mark.slow
def test_console_script_main_and_errors(tmp_path, capsys):
    pyramid = make_tiny_map(tmp_path)
    ckpt = make_tiny_checkpoint(tmp_path, pyramid)
    spec, bag = _world_bag(tmp_path, pyramid, "raw", "sqlite3")
    base = [str(bag), "--map", str(pyramid.path), "--model", str(ckpt), "--gt-topic",
            "/gps/fix", "--no-progress", "--no-plots", "--backend", "torch"]
    # ros2 run may append ROS arguments: ignored
    assert replay_cli.main(base + ["--image-topic", "/camera/image", "--out",
                                   str(tmp_path / "r1"), "--limit", "3",
                                   "--ros-args", "-r", "__node:=x"]) == 0
    assert json.loads((tmp_path / "r1" / "report.json").read_text())["frames"]["read"] == 3
    assert replay_cli.main(base + ["--image-topic", "/nope", "--out", str(tmp_path / "r2")]) == 2
    err = capsys.readouterr().err
    assert "no topic '/nope'" in err and "/camera/image (sensor_msgs/msg/Image" in err
    assert not (tmp_path / "r2").exists()
    # a checkpoint the map was not embedded with: one clear error, no report
    other = make_tiny_checkpoint(tmp_path, pyramid, seed=1, name="other.ckpt", embed=False)
    args = base + ["--image-topic", "/camera/image", "--out", str(tmp_path / "r3")]
    args[args.index(str(ckpt))] = str(other)
    assert replay_cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("jzi_replay: error:") and "jzi map embed" in err, err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "r3").exists()


def test_cli_refuses_before_loading_anything(tmp_path, capsys):
    (tmp_path / "exists").mkdir()
    args = ["replay", str(tmp_path / "nobag"), "--map", "m", "--model", "c", "--image-topic",
            "/i", "--gt-topic", "/g", "--out"]
    assert jzi_main.main(args + [str(tmp_path / "exists")]) == 2
    assert "--out" in capsys.readouterr().err
    assert jzi_main.main(args + [str(tmp_path / "new")]) == 2
    assert "nobag does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        jzi_main.main(args + [str(tmp_path / "new"), "--every", "0"])


def test_cli_flow_with_a_test_double_localizer(tmp_path, monkeypatch, capsys):
    """run(): report + output bag, and Ctrl-C -> partial report, no bag, exit 130."""
    from replay_support import IndexLocalizer, offsets_for, standard_spec
    from support import tiny_tree

    tree = tiny_tree()
    spec = standard_spec(tree, 8, corrupt=(), swap=None)
    bag = write_bag(tmp_path / "bag", spec, "mcap")
    doubles = [IndexLocalizer(tree, spec, offsets_for(8)),
               IndexLocalizer(tree, spec, offsets_for(8), interrupt_at=3)]
    monkeypatch.setattr(replay_cli.refineopts, "localizer", lambda args: doubles.pop(0))
    args = ["replay", str(bag), "--map", "unused", "--model", "unused", "--image-topic",
            "/camera/image", "--gt-topic", "/gps/fix", "--no-progress", "--no-plots",
            "--every", "2", "--bag-storage", "sqlite3", "--bag-version", "9"]
    assert jzi_main.main(args + ["--out", str(tmp_path / "r"),
                                 "--write-bag", str(tmp_path / "b")]) == 0
    assert "4 frames scored" in capsys.readouterr().out
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["frames"]["read"] == 4 and report["options"]["every"] == 2
    assert (tmp_path / "b" / "b.db3").exists()
    assert "version: 9" in (tmp_path / "b" / "metadata.yaml").read_text()
    rc = jzi_main.main(args + ["--out", str(tmp_path / "p"), "--write-bag", str(tmp_path / "c")])
    assert rc == 130
    partial = json.loads((tmp_path / "p" / "report.json").read_text())
    assert partial["interrupted"] and partial["frames"]["read"] == 3
    assert not (tmp_path / "c").exists()
    assert "not written" in capsys.readouterr().err
