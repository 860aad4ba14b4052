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
Issue 13: the bad-input holes a new user fell into, one test per numbered case.

Items 9 and 14 (CLI parsing) are tested with the shared CLI options; the rest are here, each
named ``test_13_N_...`` after the item it closes. The docs table is docs/bad-input.md.
"""
import json
import os
from pathlib import Path
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest

from jzi_ros.cli.main import main
from jzi_ros.errors import BadImageError, JziError
from support import make_tiny_checkpoint, make_tiny_map, random_rgb, world_of

ROOT = Path(__file__).resolve().parents[1]


def _jpeg(path: Path, seed: int = 0) -> bytes:
    ok, data = cv2.imencode(".jpg", random_rgb(96, 192, seed)[..., ::-1])
    assert ok
    path.write_bytes(data.tobytes())
    return data.tobytes()


def _one_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# --- 1: replay --write-bag/--out onto the input bag -----------------------------------------
def test_13_1_replay_refuses_to_write_over_its_input_bag(tmp_path, capsys):
    pytest.importorskip("rosbags")
    from replay_support import standard_spec, write_bag

    from support import tiny_tree
    bag = write_bag(tmp_path / "bag", standard_spec(tiny_tree(), 6, corrupt=(), swap=None))
    before = sorted((p.name, p.stat().st_size) for p in bag.iterdir())
    common = ["replay", str(bag), "--map", "m", "--model", "c", "--image-topic", "/camera/image",
              "--gt-topic", "/gps/fix", "--overwrite", "--no-progress"]
    for extra in (["--out", str(tmp_path / "r"), "--write-bag", str(bag)],
                  ["--out", str(bag)],
                  ["--out", str(bag / "report")],
                  ["--out", str(tmp_path / "r"), "--write-bag", str(tmp_path)]):
        assert main(common + extra) == 2
        line = _one_line(capsys.readouterr().err)
        assert "would replace the input" in line and str(bag) in line
    assert sorted((p.name, p.stat().st_size) for p in bag.iterdir()) == before
    # a bag given as its data file: its directory is the input too
    data_file = next(p for p in bag.iterdir() if p.suffix in (".db3", ".mcap"))
    from jzi_ros.files import refuse_overlap
    with pytest.raises(JziError, match="is the input bag"):
        refuse_overlap(bag, data_file, "--write-bag", "input bag")


# --- 2: several embedding tables per map ---------------------------------------------------------
def test_13_2_two_models_on_one_map_both_keep_working(tmp_path):
    from jzi_ros.inference.localizer import Localizer, LocalizerConfig
    from jzi_ros.maps.preview import map_summary
    from jzi_ros.maps.pyramid import MapPyramid

    pyramid = make_tiny_map(tmp_path)
    first = make_tiny_checkpoint(tmp_path, pyramid, seed=0, name="first.ckpt")
    second = make_tiny_checkpoint(tmp_path, pyramid, seed=1, name="second.ckpt")
    image = world_of(pyramid).ground_image(0.0, 0.0)
    config = LocalizerConfig(backend="torch", device="cpu", warmup_frames=0)
    for ckpt in (first, second):
        assert Localizer.from_paths(pyramid.path, ckpt, config).localize(image).ok
    reopened = MapPyramid.open(pyramid.path)
    assert len(reopened.embedding_tables()) == 2
    assert map_summary(reopened).count("embeddings encoder") == 2


# --- 3 and 12: exports in a cache folder, damaged exports redone ---------------------------------
@pytest.mark.slow
def test_13_3_and_12_exports_go_to_the_cache_and_damage_is_repaired(tmp_path, caplog):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from jzi_ros.inference.backends import BackendSpec, create_backend
    from jzi_ros.inference.export import (default_export_dir, ENCODER_FILE, ensure_export,
                                          export_cache_root, export_key)
    from jzi_ros.model.checkpoint import read_header

    pyramid = make_tiny_map(tmp_path / "m")
    models = tmp_path / "models"
    models.mkdir()
    ckpt = make_tiny_checkpoint(models, pyramid)
    with caplog.at_level("WARNING", logger="jzi_ros.inference.export"):
        encoder, decoder, info = ensure_export(ckpt, None, 2, 1)
    folder = default_export_dir(ckpt)
    header = read_header(ckpt)
    assert folder == export_cache_root() / export_key(header["weights_hash"], header["config"])
    assert encoder.parent == folder and decoder.parent == folder
    assert sorted(p.name for p in models.iterdir()) == ["tiny.ckpt"]  # nothing beside it
    assert str(folder) in caplog.text  # says where
    # 12: a truncated encoder.onnx is detected and exported again
    data = encoder.read_bytes()
    encoder.write_bytes(data[: len(data) // 3])
    caplog.clear()
    with caplog.at_level("WARNING", logger="jzi_ros.inference.export"):
        table = pyramid.load_embeddings(read_header(ckpt)["encoder_hash"])
        backend = create_backend("onnxruntime", BackendSpec(str(ckpt), table, 4, 2, 2), "cpu",
                                 "fp32")
    assert "damaged" in caplog.text and encoder.read_bytes() == data
    shape = info["encoder"]["inputs"][0]["shape"]
    assert backend.encode(np.zeros(shape, np.float32)).shape == (1, info["embed_dim"])
    # a damaged export.json is redone too, not an InvalidProtobuf/JSON traceback
    (folder / "export.json").write_text("{truncated")
    ensure_export(ckpt, None, 2, 1)
    assert json.loads((folder / "export.json").read_text())["sha256"][ENCODER_FILE]


# --- 4: SIGTERM cleans up, and stale temporaries are swept ---------------------------------------
def test_13_4_sigterm_removes_temporaries_like_ctrl_c(tmp_path):
    script = textwrap.dedent("""
        import os, signal, sys, time
        from jzi_ros.cli.main import terminate_like_interrupt
        from jzi_ros.files import atomic_directory
        terminate_like_interrupt()
        try:
            with atomic_directory(sys.argv[1]) as tmp:
                (tmp / "views.npy").write_bytes(b"x" * 4096)
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(30)
        except KeyboardInterrupt:
            sys.exit(143)
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "map")], env=env,
                            timeout=120)
    assert result.returncode == 143
    assert list(tmp_path.iterdir()) == []


def test_13_4_stale_temporaries_of_dead_writers_are_swept(tmp_path):
    from jzi_ros.files import atomic_directory

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".map.{dead.pid}.abc123.tmp"
    stale.mkdir()
    (stale / "views.npy").write_bytes(b"x" * 100)
    live = tmp_path / f".map.{os.getpid()}.def456.tmp"  # a concurrent writer: kept
    live.mkdir()
    foreign = tmp_path / ".map.notours.tmp"
    foreign.write_text("not our naming")
    with atomic_directory(tmp_path / "map") as tmp:
        (tmp / "manifest.json").write_text("{}")
    assert not stale.exists() and live.exists() and foreign.exists()
    assert (tmp_path / "map" / "manifest.json").is_file()


# --- 5: one image reader, truncated is bad ------------------------------------------------------
def test_13_5_truncated_jpeg_is_a_bad_image_everywhere(tmp_path, tiny_checkpoint, capfd):
    from jzi_ros.inference.image import decode_image, read_image

    pyramid, ckpt = tiny_checkpoint
    data = _jpeg(tmp_path / "whole.jpg")
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    assert read_image(tmp_path / "whole.jpg").shape == (96, 192, 3)
    with pytest.raises(BadImageError, match="truncated JPEG"):
        read_image(tmp_path / "cut.jpg")
    with pytest.raises(BadImageError, match="truncated JPEG"):  # a bag's CompressedImage
        decode_image(data[: len(data) // 2], "CompressedImage message")
    rc = main(["localize", str(tmp_path / "cut.jpg"), str(tmp_path / "missing.png"),
               "--map", str(pyramid.path), "--model", str(ckpt), "--device", "cpu",
               "--backend", "torch"])
    out, err = capfd.readouterr()
    assert rc == 1 and "FIX" not in out
    assert "truncated JPEG" in err and "missing.png does not exist" in err
    assert "findDecoder" not in err  # no OpenCV warning for a missing file


# --- 6: confidence gate and degenerate frames -----------------------------------------------
def test_13_6_degenerate_frames_are_no_fix_with_a_reason(tiny_checkpoint):
    from jzi_ros.inference.fix import FixStatus
    from jzi_ros.inference.localizer import Localizer, LocalizerConfig

    pyramid, ckpt = tiny_checkpoint
    localizer = Localizer.from_paths(pyramid.path, ckpt, LocalizerConfig(
        backend="torch", device="cpu", confidence_threshold=0.0, warmup_frames=0))
    rng = np.random.default_rng(0)
    frames = {
        "black": np.zeros((480, 640, 3), np.uint8),
        "sliver 750x2": rng.integers(0, 256, (2, 750, 3), dtype=np.uint8),
        "lens cap": np.clip(rng.normal(3, 1, (480, 640, 3)), 0, 255).astype(np.uint8),
        "overexposed": np.full((480, 640, 3), 255, np.uint8),
    }
    for name, frame in frames.items():
        fix = localizer.localize(frame)
        assert fix.status == FixStatus.NO_FIX and "degenerate frame" in fix.reason, name
        assert np.all(np.isfinite(fix.covariance_enu)), name
    assert localizer.localize(world_of(pyramid).ground_image(0.0, 0.0)).ok


def test_13_6_gate_is_fitted_on_validation_and_used_by_default(tiny_checkpoint):
    from jzi_ros.inference.calibration import calibrate, fit_confidence_gate, save_calibration
    from jzi_ros.inference.localizer import Localizer, LocalizerConfig

    # placed frames are the confident ones: the gate lands between the two groups
    confidence = np.array([0.9, 0.8, 0.7, 0.6, 0.3, 0.2, 0.1, 0.05])
    placed = np.array([1, 1, 1, 0, 0, 0, 0, 0], bool)
    assert fit_confidence_gate(confidence, placed) == pytest.approx(0.7)
    assert fit_confidence_gate(confidence, np.ones(8, bool)) == 0.0  # nothing to separate
    rng = np.random.default_rng(0)
    rows = []
    for c, ok in zip(confidence, placed):
        error = rng.normal(0, 10 if ok else 500, 2)
        rows.append((error, np.zeros(2), np.eye(2) * 100.0, c))
    result = calibrate(rows, 4, "top", 0.01, placed_radius_m=100.0)
    assert result.confidence_threshold == pytest.approx(0.7)
    assert result.gate_fix_rate == pytest.approx(3 / 8)
    assert result.mean_nees == pytest.approx(2.0, rel=1e-3)  # on the gated (published) frames
    assert [r["threshold"] for r in result.gate_tradeoff][0] == 0.0
    # the Localizer takes the gate from the checkpoint unless told otherwise
    pyramid, ckpt = tiny_checkpoint
    result.confidence_threshold = 1.0  # nothing passes: every frame NO_FIX
    save_calibration(ckpt, result)
    image = world_of(pyramid).ground_image(0.0, 0.0)
    base = {"backend": "torch", "device": "cpu", "warmup_frames": 0}
    gated = Localizer.from_paths(pyramid.path, ckpt, LocalizerConfig(**base)).localize(image)
    assert not gated.ok and "below threshold 1" in gated.reason
    for override in (0.0, 1e-9):  # 0 disables, a number overrides
        fix = Localizer.from_paths(pyramid.path, ckpt, LocalizerConfig(
            **base, confidence_threshold=override)).localize(image)
        assert fix.ok


# --- 7: missing numbers are null / "—" ----------------------------------------------------------
def test_13_7_no_fix_frames_print_dashes_not_zeros():
    from jzi_ros.cli.demo import format_table
    from jzi_ros.evaluation.metrics import calibration_summary, error_summary, recall_at

    fix = {**error_summary([]), "recall": {f"{d:g}": v for d, v in recall_at([]).items()}}
    top1 = {**error_summary([10.0, 30.0]),
            "recall": {f"{d:g}": v for d, v in recall_at([10.0, 30.0]).items()}}
    assert fix["median_m"] is None and set(fix["recall"].values()) == {None}
    assert calibration_summary(np.zeros((0, 2)), np.zeros((0, 2, 2)))["mean_nees"] is None
    table = format_table({"top1": top1, "fix": fix}, {})
    fix_row = table.splitlines()[3]
    assert "published fixes, 0 frames" in fix_row and "0.0" not in fix_row
    assert fix_row.count("\u2014") == 5


# --- 8: every tensor is covered by the checkpoint hash ---------------------------------------
def test_13_8_flipped_decoder_bytes_are_refused(tmp_path, tiny_map):
    from jzi_ros.model.checkpoint import load_checkpoint

    ckpt = make_tiny_checkpoint(tmp_path, tiny_map, embed=False)
    raw = bytearray(ckpt.read_bytes())
    header_len = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + header_len])
    name = next(k for k in sorted(header) if k.startswith("decoder.") and
                header[k]["dtype"] == "F32" and
                header[k]["data_offsets"][1] - header[k]["data_offsets"][0] >= 64)
    start = 8 + header_len + header[name]["data_offsets"][0]
    raw[start + 17] ^= 0x40  # one exponent bit of one weight
    ckpt.write_bytes(bytes(raw))
    with pytest.raises(JziError, match="corrupt"):
        load_checkpoint(ckpt)
    assert main(["map", "embed", str(tiny_map.path), "--model", str(ckpt),
                 "--no-progress"]) == 2


# --- 10: map size estimated before building -------------------------------------------------
@pytest.mark.parametrize("extra", [["--depth", "12"], ["--depth", "8", "--tile-px", "64"]])
def test_13_10_impossible_maps_are_refused_up_front(tmp_path, capsys, extra):
    pytest.importorskip("rasterio")
    from test_maps_cli import build_args, geotiff

    src = geotiff(tmp_path / "src.tif")
    assert main(build_args(src, tmp_path / "map", "--grid", "4", *extra)) == 2
    assert "would need" in _one_line(capsys.readouterr().err)
    assert not (tmp_path / "map").exists()


def test_13_10_large_maps_need_an_explicit_flag(tmp_path, capsys, monkeypatch):
    pytest.importorskip("rasterio")
    from jzi_ros.maps import build as build_module
    from test_maps_cli import build_args, geotiff

    monkeypatch.setattr(build_module, "LARGE_MAP_BYTES", 1000)
    args = build_args(geotiff(tmp_path / "src.tif"), tmp_path / "map")
    assert main(args) == 2
    assert "--allow-large" in _one_line(capsys.readouterr().err)
    assert main(args + ["--allow-large"]) == 0


# --- 11: missing optional dependencies ---------------------------------------------------
def test_13_11_missing_extras_are_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "rasterio", None)
    assert main(["map", "build", "x.tif", "--out", str(tmp_path / "m"), "--center", "1,2",
                 "--size", "100", "--no-progress"]) == 2
    assert "jzi_ros[maps]" in _one_line(capsys.readouterr().err)
    assert main(["demo", "--workdir", str(tmp_path / "d")]) == 2
    assert "jzi_ros[maps]" in _one_line(capsys.readouterr().err)
    monkeypatch.setitem(sys.modules, "rosbags", None)
    from jzi_ros.cli.replay import main as replay_main
    assert replay_main([str(tmp_path), "--map", "m", "--model", "c", "--image-topic", "/i",
                        "--gt-topic", "/g", "--out", str(tmp_path / "r")]) == 2
    assert "jzi_ros[replay]" in _one_line(capsys.readouterr().err)


def test_13_11_a_late_missing_module_is_one_line_too(monkeypatch, capsys):
    from jzi_ros.cli import export as export_cli

    def run(args):
        import onnxscript  # noqa: F401 - blocked below: what a plain install would raise
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    monkeypatch.setattr(export_cli, "run", run)
    assert main(["export", "--model", "x"]) == 2
    assert "jzi_ros[export]" in _one_line(capsys.readouterr().err)


@pytest.mark.slow
def test_13_11_the_wheel_ships_the_training_configs(tmp_path):
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                             "--no-build-isolation", "-w", str(tmp_path / "wheel"), str(ROOT)],
                            capture_output=True, text=True, timeout=300,
                            cwd=tmp_path)
    if result.returncode != 0:
        pytest.skip(f"cannot build a wheel here: {result.stderr.strip()[-200:]}")
    import zipfile
    wheel = next((tmp_path / "wheel").glob("jzi_ros-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    configs = sorted(p.name for p in (ROOT / "jzi_ros" / "training" / "configs").glob("*.yaml"))
    assert configs and all(f"jzi_ros/training/configs/{c}" in names for c in configs)


# --- 13: every training image checked before the first step -----------------------------
def test_13_13_train_checks_every_image_before_the_first_step(tmp_path):
    from jzi_ros.training.config import load_train_config
    from jzi_ros.training.loop import train
    from jzi_ros.training.manifest import Sample, write_manifest

    pyramid = make_tiny_map(tmp_path)
    tree = pyramid.tree
    samples = []
    for i in range(6):
        data = _jpeg(tmp_path / f"{i}.jpg", seed=i)
        if i == 4:  # truncated: libjpeg would decode it with a grey bottom half
            (tmp_path / f"{i}.jpg").write_bytes(data[: len(data) // 2])
        lat, lon = tree.to_latlon(10.0 * i, 0.0)
        samples.append(Sample(tmp_path / f"{i}.jpg", float(lat), float(lon)))
    write_manifest(tmp_path / "manifest.csv", samples)
    config = load_train_config(None, [f"manifest={tmp_path / 'manifest.csv'}",
                                      f"map={pyramid.path}", f"out={tmp_path / 'run'}",
                                      "model_preset=tiny", "num_workers=2", "epochs=1"])
    with pytest.raises(JziError, match=r"1 of 6 image file\(s\) unusable: .*4.jpg is a "
                                       r"truncated JPEG"):
        train(config, progress=False, log=lambda _msg: None)
    assert not (tmp_path / "run" / "last.safetensors").exists()


# --- 15: map build --model of another depth: refused before building ----------------------
def test_13_15_map_build_checks_the_model_first(tmp_path, capsys):
    pytest.importorskip("rasterio")
    from test_maps_cli import build_args, geotiff

    ckpt = make_tiny_checkpoint(tmp_path, make_tiny_map(tmp_path / "m"), embed=False)  # 4x4, D2
    args = build_args(geotiff(tmp_path / "src.tif"), tmp_path / "map", "--model", str(ckpt))
    assert main(args) == 2  # the map would be 2x2, depth 3
    assert "grid with depth 2" in _one_line(capsys.readouterr().err)
    assert not (tmp_path / "map").exists()
