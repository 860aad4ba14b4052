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
The retrieval baseline: its loss, training, checkpoints, localizer and CLI wiring.

Everything runs on a tiny synthetic map (16 finest-level views) with the tiny encoder, so
each test takes seconds on a CPU.
"""
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from safetensors import safe_open
import torch

from jzi_ros.errors import JziError
from jzi_ros.inference.retrieval import (MAX_MEASURED_VIEWS, MEASURED_MASS, measured_views,
                                         RetrievalLocalizer)
from jzi_ros.model.checkpoint import load_checkpoint, save_checkpoint
from jzi_ros.model.retrieval import info_nce, load_retrieval, save_retrieval
from jzi_ros.training.manifest import Sample, write_manifest

from support import (make_tiny_checkpoint, make_tiny_map, make_tiny_model, one_thread_torch,
                     save_identity_retrieval, tiny_retrieval, world_of)


one_thread = pytest.fixture(autouse=True)(one_thread_torch)


def finest_paths(tree):
    return list(tree.level_paths(tree.depth - 1))


def write_view_manifest(root: Path, pyramid, split: str, jitter_m: float = 0.0,
                        seed: int = 0, repeat: int = 1) -> Path:
    """One image per finest-level cell (the world around a point in it) + a manifest."""
    world, tree = world_of(pyramid), pyramid.tree
    rng = np.random.default_rng(seed)
    side = tree.cell_side(tree.depth - 1)
    images = root / f"images_{split}"
    images.mkdir(parents=True, exist_ok=True)
    samples = []
    for index, path in enumerate(finest_paths(tree)):
        east, north = tree.cell_center_local(path)
        east, north = np.array([east, north]) + rng.uniform(-jitter_m, jitter_m, 2)
        image = world.ground_image(east, north, extent_m=side, size=(48, 48))
        file = images / f"{index}.png"
        cv2.imwrite(str(file), image[..., ::-1])
        lat, lon = tree.to_latlon(east, north)
        samples += [Sample(file, float(lat), float(lon), split=split)] * repeat
    manifest = root / f"{split}.csv"
    write_manifest(manifest, samples)
    return manifest


def test_info_nce_does_not_push_apart_frames_of_one_view():
    rng = torch.Generator().manual_seed(0)
    views = torch.nn.functional.normalize(torch.randn(4, 16, generator=rng), dim=-1)
    views[1] = views[0]  # samples 0 and 1 lie in the same cell: one view, twice
    frames = views.clone()  # every frame embedded exactly on its own view
    scale = torch.tensor(50.0)
    shared = info_nce(frames, views, torch.tensor([7, 7, 8, 9]), scale)
    unmasked = info_nce(frames, views, torch.tensor([7, 6, 8, 9]), scale)
    # masked: a perfect embedding has (almost) no loss; unmasked the twin is a negative
    # exactly as similar as the positive, which costs log 2 on both of their rows
    assert shared.item() < 1e-3
    assert unmasked.item() == pytest.approx(0.5 * np.log(2.0), rel=0.05)


def test_train_retrieval_cli_lowers_loss_and_writes_checkpoints(tmp_path):
    from jzi_ros.cli.main import main

    pyramid = make_tiny_map(tmp_path)
    manifest = write_view_manifest(tmp_path, pyramid, "train", jitter_m=60.0, repeat=4)
    out = tmp_path / "run"
    code = main(["train-retrieval", f"manifest={manifest}", f"map={pyramid.path}",
                 f"out={out}", "model_preset=tiny", "model.ground_crops=single",
                 "num_workers=0", "epochs=8", "batch_size=16", "lr=3e-3", "warmup=0.05",
                 "val_fraction=0.2", "augment=false", "--embed-dim", "32", "--no-progress"])
    assert code == 0
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(history) == 8
    assert history[-1]["train_loss"] < 0.7 * history[0]["train_loss"]
    assert {"val_recall@1", "val_recall@5", "val_loss"} <= set(history[-1])
    # the held-out rows repeat training images: the search must have learnt them
    assert history[-1]["val_recall@1"] >= 0.6 > history[0]["val_recall@1"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["views"] == 16 and summary["view_level"] == 1
    model, metadata = load_retrieval(out / "best.safetensors")
    assert metadata["tree"] == pyramid.tree.to_dict()
    assert model.config.embed_dim == 32 and model.model_config.ground_crops == "single"
    # a second run into the same directory is refused
    assert main(["train-retrieval", f"manifest={manifest}", f"map={pyramid.path}",
                 f"out={out}", "model_preset=tiny", "num_workers=0", "epochs=1",
                 "--no-progress"]) == 2


def test_checkpoint_round_trip_and_refusals_of_the_other_kind(tmp_path):
    pyramid = make_tiny_map(tmp_path)
    model = tiny_retrieval(pyramid, seed=3, crops="split2")
    with torch.no_grad():
        model.logit_scale.fill_(2.5)
    path = tmp_path / "retrieval.safetensors"
    save_retrieval(path, model, {"note": "test"})
    with safe_open(str(path), framework="pt") as handle:  # a safetensors file, no pickle
        assert handle.metadata()["format"] == "jzi-retrieval-model/1"
    loaded, metadata = load_retrieval(path)
    assert metadata == {"note": "test"}
    assert loaded.config.to_dict() == model.config.to_dict()
    pixels = torch.randn(2, 2, 3, 56, 56)
    with torch.no_grad():
        assert torch.equal(loaded.encode_frames(pixels), model.encode_frames(pixels))
        assert loaded.scale().item() == pytest.approx(np.exp(2.5), rel=1e-6)

    zoom = tmp_path / "zoom.safetensors"
    save_checkpoint(zoom, make_tiny_model(pyramid))
    with pytest.raises(JziError, match=r"zoom\.safetensors: header format is 'jzi-zoom-model/1'"
                                       r".*a zoom model \(jzi train\): pass it as --model"):
        load_retrieval(zoom)
    with pytest.raises(JziError, match=r"retrieval\.safetensors: .*retrieval baseline model .*"
                                       r"--retrieval-model with --method retrieval"):
        load_checkpoint(path)
    # flipped weights are caught by the header's hash
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(JziError, match="corrupt"):
        load_retrieval(path)


def test_localizer_finds_the_cell_of_a_map_view(tmp_path):
    pyramid = make_tiny_map(tmp_path)
    model = tiny_retrieval(pyramid, seed=1)
    with torch.no_grad():  # same head on both sides: a view is nearest to itself
        model.frame_head.load_state_dict(model.view_head.state_dict())
    path = tmp_path / "identity.safetensors"
    save_retrieval(path, model)
    localizer = RetrievalLocalizer(pyramid.path, path, top_k=3, progress=False)
    tree = pyramid.tree
    side = tree.cell_side(1)
    assert localizer.table.shape == (16, 32) and localizer.backend_name.startswith("retrieval")
    for cell in finest_paths(tree):
        view = np.ascontiguousarray(pyramid.view(cell))
        fix = localizer.localize(view)
        assert fix.ok and len(fix.hypotheses) == 3
        assert fix.hypotheses[0].path == cell
        assert (fix.east_m, fix.north_m) == pytest.approx(tree.cell_center_local(cell))
        assert sum(h.probability for h in fix.hypotheses) == pytest.approx(1.0)
        assert 0.0 < fix.confidence <= 1.0
        assert np.all(np.isfinite(fix.covariance_enu))
        assert np.all(np.linalg.eigvalsh(fix.covariance_enu[:2, :2]) >= side ** 2 / 12 - 1e-6)
        assert set(fix.timings_ms) == {"preprocess", "encode", "search", "total"}
    # a different frame head breaks the identity: the same search then misses most cells
    with torch.no_grad():
        model.frame_head.weight.mul_(-1.0)
    save_retrieval(path, model)
    flipped = RetrievalLocalizer(pyramid.path, path, progress=False)
    hits = sum(flipped.localize(np.ascontiguousarray(pyramid.view(c))).hypotheses[0].path == c
               for c in finest_paths(tree))
    assert hits < 8
    # a uniform frame carries no place information: NO_FIX, finite
    blank = localizer.localize(np.full((40, 40, 3), 128, np.uint8))
    assert not blank.ok and np.all(np.isfinite(blank.covariance_enu))


def test_method_retrieval_needs_its_model_then_evaluates_end_to_end(tmp_path, capsys):
    from jzi_ros.cli.main import main

    pyramid = make_tiny_map(tmp_path)
    manifest = write_view_manifest(tmp_path, pyramid, "test", jitter_m=40.0)
    out = tmp_path / "report"
    assert main(["evaluate", str(manifest), "--map", str(pyramid.path), "--method",
                 "retrieval", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--retrieval-model PATH" in err
    assert not out.exists()

    model = tiny_retrieval(pyramid, seed=2)
    checkpoint = tmp_path / "r.safetensors"
    save_retrieval(checkpoint, model)
    assert main(["evaluate", str(manifest), "--map", str(pyramid.path), "--method",
                 "retrieval", "--retrieval-model", str(checkpoint), "--out", str(out),
                 "--no-plots", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "16 images scored" in printed
    assert any(line.startswith("retrieval ") for line in printed.splitlines())
    report = json.loads((out / "report.json").read_text())
    assert report["backend"].startswith("retrieval") and report["frames"]["used"] == 16
    assert len((out / "frames.csv").read_text().splitlines()) == 17
    # a zoom checkpoint given as the retrieval model is one clear line
    zoom = tmp_path / "zoom.safetensors"
    save_checkpoint(zoom, make_tiny_model(pyramid))
    assert main(["evaluate", str(manifest), "--map", str(pyramid.path), "--method",
                 "retrieval", "--retrieval-model", str(zoom), "--out", str(tmp_path / "r2"),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "a zoom model" in err


def test_bench_times_the_retrieval_frame_next_to_the_zoom(tmp_path, capsys):
    from jzi_ros.cli.main import main

    pyramid = make_tiny_map(tmp_path)
    zoom = make_tiny_checkpoint(tmp_path, pyramid, name="zoom.safetensors")  # map embedded
    retrieval = tmp_path / "r.safetensors"
    save_retrieval(retrieval, tiny_retrieval(pyramid, seed=3))
    out = tmp_path / "bench.json"
    assert main(["bench", "--map", str(pyramid.path), "--model", str(zoom), "--backend",
                 "torch", "--device", "cpu", "--frames", "3", "--warmup", "1",
                 "--no-paper-way", "--no-fusion", "--retrieval-model", str(retrieval),
                 "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    row = next(line for line in printed.splitlines() if line.startswith("| retrieval (torch"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[4] == "16"  # the tiny map's finest views, all searched
    preprocess, encode, search = (float(v) for v in cells[2].split(" / "))
    assert min(preprocess, encode, search) > 0.0
    assert float(cells[1].split(" / ")[0]) >= encode  # the frame holds its encoder pass
    timings = json.loads(out.read_text())[0]["retrieval"]
    assert set(timings) == {"torch-jit"}  # --backend torch: no ONNX Runtime row
    timing = timings["torch-jit"]
    assert timing["views"] == 16 and timing["table_bytes"] == 16 * 32 * 4
    assert timing["frame_ms"]["median"] <= timing["frame_ms"]["p95"]
    # a random --preset map has no retrieval model, and a zoom file is no retrieval model:
    # each refused in one line before any timing
    assert main(["bench", "--preset", "tiny", "--retrieval-model", str(retrieval)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--retrieval-model" in err
    assert main(["bench", "--map", str(pyramid.path), "--model", str(zoom), "--backend",
                 "torch", "--device", "cpu", "--no-paper-way", "--no-fusion",
                 "--retrieval-model", str(zoom)]) == 2
    captured = capsys.readouterr()
    assert "timing" not in captured.out and "a zoom model" in captured.err


@pytest.mark.parametrize("graph", ["jit", pytest.param(
    "aoti", marks=(pytest.mark.slow, pytest.mark.cxx))])
def test_the_traced_cpu_encoder_gives_the_eager_fixes(tmp_path, graph):
    from jzi_ros.inference.localizer import LocalizerConfig

    pyramid = make_tiny_map(tmp_path)
    checkpoint = tmp_path / "r.safetensors"
    save_retrieval(checkpoint, tiny_retrieval(pyramid, seed=5))
    runs = {mode: RetrievalLocalizer(pyramid.path, checkpoint, progress=False,
                                     config=LocalizerConfig(cpu_graph=mode,
                                                            export_dir=str(tmp_path / "x")))
            for mode in ("eager", graph)}
    assert runs["eager"].backend_name == "retrieval-torch-cpu"
    assert runs[graph].backend_name == f"retrieval-torch-{graph}-cpu"
    # aoti: compiled into the export folder (not fallen back to the trace)
    assert len(list(tmp_path.glob("x/aoti/retrieval-frame-encoder-*.pt2"))) == (
        graph == "aoti")
    for cell in finest_paths(pyramid.tree):
        view = np.ascontiguousarray(pyramid.view(cell))
        eager, traced = (runs[mode].localize(view) for mode in ("eager", graph))
        assert [h.path for h in traced.hypotheses] == [h.path for h in eager.hypotheses]
        assert traced.confidence == pytest.approx(eager.confidence, rel=1e-4)


def test_onnx_runtime_backend_gives_torch_fixes_from_the_exported_frame_encoder(
        tmp_path, capsys):
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed")
    from jzi_ros.cli.main import main
    from jzi_ros.inference.localizer import LocalizerConfig
    from jzi_ros.inference.retrieval_export import EXPORT_JSON, FRAME_FILE

    pyramid = make_tiny_map(tmp_path)
    checkpoint = tmp_path / "r.safetensors"
    save_retrieval(checkpoint, tiny_retrieval(pyramid, seed=4))
    out = tmp_path / "export"

    def localizer(backend: str) -> RetrievalLocalizer:
        return RetrievalLocalizer(pyramid.path, checkpoint, progress=False, config=LocalizerConfig(
            backend=backend, export_dir=str(out)))

    # auto takes torch while there is no export (none is started behind the user's back)
    assert localizer("auto").backend_name == "retrieval-torch-jit-cpu" and not out.exists()
    assert main(["export", "--retrieval-model", str(checkpoint), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"exported {checkpoint} -> {out}" in printed and "parity onnxruntime-cpu vs torch " \
        "fp32: OK" in printed
    assert (out / FRAME_FILE).is_file() and (out / EXPORT_JSON).is_file()
    torch_run, onnx_run = localizer("torch"), localizer("auto")
    assert onnx_run.backend_name == "retrieval-onnxruntime-cpu"
    for cell in finest_paths(pyramid.tree):
        view = np.ascontiguousarray(pyramid.view(cell))
        expected, got = torch_run.localize(view), onnx_run.localize(view)
        assert [h.path for h in got.hypotheses] == [h.path for h in expected.hypotheses]
        assert got.confidence == pytest.approx(expected.confidence, rel=1e-4)
        assert got.covariance_enu == pytest.approx(expected.covariance_enu, rel=1e-4)
    # a damaged export is not used by auto, and exported again when onnxruntime is named
    (out / FRAME_FILE).write_bytes(b"not a graph")
    assert localizer("auto").backend_name == "retrieval-torch-jit-cpu"
    again = localizer("onnxruntime")
    assert again.backend_name == "retrieval-onnxruntime-cpu"
    view = np.ascontiguousarray(pyramid.view(finest_paths(pyramid.tree)[3]))
    assert [h.path for h in again.localize(view).hypotheses] == [
        h.path for h in torch_run.localize(view).hypotheses]
    # there is no TensorRT engine of a retrieval model; one export command takes one model
    with pytest.raises(JziError, match="retrieval runs on onnxruntime or torch"):
        localizer("tensorrt")
    assert main(["export", "--retrieval-model", str(checkpoint), "--model",
                 str(checkpoint)]) == 2
    assert "give one checkpoint" in capsys.readouterr().err


def test_localize_measured_is_the_softmax_over_every_view_as_cells(tmp_path):
    from jzi_ros.inference.measurement import Measurement

    pyramid = make_tiny_map(tmp_path)
    path = save_identity_retrieval(pyramid, tmp_path / "identity.safetensors")
    localizer = RetrievalLocalizer(pyramid.path, path, progress=False)
    tree = pyramid.tree
    centres = np.array([tree.cell_center_local(c) for c in finest_paths(tree)])
    for cell in finest_paths(tree)[::5]:
        view = np.ascontiguousarray(pyramid.view(cell))
        fix, measurement = localizer.localize_measured(view)
        plain = localizer.localize(view)
        assert fix.hypotheses == plain.hypotheses and fix.confidence == plain.confidence
        assert measurement.mass.sum() + measurement.background == pytest.approx(1.0)
        assert 1 <= len(measurement.mass) <= 16 and set(measurement.levels) == {
            tree.depth - 1}
        assert measurement.mass.sum() >= MEASURED_MASS - 1e-12  # the rest: background
        # the density is highest over the cell the fix names, constant inside each cell
        density = measurement.densities(tree, centres[:, 0], centres[:, 1])
        assert finest_paths(tree)[int(np.argmax(density))] == fix.hypotheses[0].path == cell
        side = tree.cell_side(tree.depth - 1)
        east, north = tree.cell_center_local(cell)
        inside = measurement.densities(tree, np.array([east - side / 3, east + side / 3]),
                                       np.array([north + side / 3, north - side / 3]))
        assert inside == pytest.approx([density.max()] * 2)
        # the cell's mass is the view's softmax probability (the fix's confidence), on top
        # of the uniform rest (the views outside the 99.9 % kept)
        uniform = measurement.background / tree.size_m ** 2
        assert float(density.max() - uniform) * side ** 2 == pytest.approx(
            math.exp(fix.hypotheses[0].log_prob)) == pytest.approx(fix.confidence)
    # a uniform frame: NO_FIX and no measurement (the filter only propagates)
    blank_fix, blank = localizer.localize_measured(np.full((40, 40, 3), 128, np.uint8))
    assert not blank_fix.ok and blank is None
    # bad cell probabilities are refused in one line
    with pytest.raises(JziError, match="one probability per distinct cell"):
        Measurement.from_cells(tree, 1, [0, 0], [0.5, 0.5])
    with pytest.raises(JziError, match="outside level 1"):
        Measurement.from_cells(tree, 1, [16], [1.0])
    with pytest.raises(JziError, match="finite"):
        Measurement.from_cells(tree, 1, [0, 1], [np.nan, 0.5])


def test_calibrate_stores_the_gate_and_scale_every_retrieval_fix_then_uses(tmp_path, capsys):
    from jzi_ros.cli.main import main
    from jzi_ros.evaluation.metrics import nees_2d
    from jzi_ros.inference.calibration import Calibration
    from jzi_ros.inference.localizer import LocalizerConfig
    from jzi_ros.inference.posterior import apply_scale_and_floor

    pyramid = make_tiny_map(tmp_path)
    tree = pyramid.tree
    manifest = write_view_manifest(tmp_path, pyramid, "val", jitter_m=150.0, repeat=2)
    checkpoint = tmp_path / "r.safetensors"
    save_retrieval(checkpoint, tiny_retrieval(pyramid, seed=2))
    before = RetrievalLocalizer(pyramid.path, checkpoint, progress=False)
    assert before.calibration is None and before.covariance_scale == 1.0
    assert before.confidence_threshold == 0.0  # uncalibrated: no gate
    common = ["localize", "--map", str(pyramid.path), "--calibrate", str(manifest),
              "--no-progress"]
    # one model, not both and not none: one line each, nothing written
    assert main(common + ["--retrieval-model", str(checkpoint), "--model",
                          str(checkpoint)]) == 2
    assert main(common) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all("give one model" in line for line in err)
    assert main(common + ["--retrieval-model", str(checkpoint)]) == 0
    printed = capsys.readouterr().out
    assert "calibration on 32 frames (beam 5, position top" in printed
    assert f"stored in {checkpoint}" in printed
    model, metadata = load_retrieval(checkpoint)  # the weights still verify
    stored = Calibration.from_metadata(metadata)
    assert stored.frames == 32 and stored.beam_width == 5 and stored.position == "top"
    # a new localizer from the file runs with both; every fix is scaled and gated by them
    after = RetrievalLocalizer(pyramid.path, checkpoint, progress=False)
    assert after.covariance_scale == pytest.approx(stored.covariance_scale) != 1.0
    assert after.confidence_threshold == pytest.approx(stored.confidence_threshold)
    from jzi_ros.training.manifest import read_manifest

    errors, covariances = [], []
    for sample in read_manifest(manifest):
        image = cv2.imread(str(sample.image))[..., ::-1]
        position, raw, confidence = after.raw_estimate(image, with_confidence=True)
        fix = after.localize(image)
        assert fix.confidence == pytest.approx(confidence)
        assert fix.ok == (confidence >= stored.confidence_threshold)
        if not fix.ok:
            assert "below the threshold" in fix.reason
            continue
        assert (fix.east_m, fix.north_m) == pytest.approx(tuple(position))
        assert fix.covariance_enu[:2, :2] == pytest.approx(apply_scale_and_floor(
            raw, stored.covariance_scale, after.config.sigma_floor_m))
        truth = np.array(tree.to_local(sample.latitude, sample.longitude))
        errors.append(position - truth)
        covariances.append(fix.covariance_enu[:2, :2])
    # the published fixes on the frames it was fitted on: mean NEES 2, as calibration said
    assert len(errors) >= 2
    assert nees_2d(np.array(errors), np.array(covariances)).mean() == pytest.approx(
        stored.mean_nees, rel=1e-6) == pytest.approx(2.0, rel=1e-3)
    # jzi localize on images with the retrieval model: one JSON fix per image, gated and
    # scaled as above (the first calibration frame: its fix from the API, printed)
    first = read_manifest(manifest)[0]
    assert main(["localize", str(first.image), "--map", str(pyramid.path), "--retrieval-model",
                 str(checkpoint), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    expected = after.localize(cv2.imread(str(first.image))[..., ::-1])
    assert printed["status"] == expected.status.name and len(printed["hypotheses"]) == 5
    assert printed["covariance_enu"] == pytest.approx(expected.covariance_enu.ravel().tolist())
    # the node's settings override both (0: no gate)
    override = RetrievalLocalizer(pyramid.path, checkpoint, progress=False, config=LocalizerConfig(
        confidence_threshold=0.0, covariance_scale=3.0))
    assert override.confidence_threshold == 0.0 and override.covariance_scale == 3.0
    # a blank frame has nothing to calibrate on: one clear error
    with pytest.raises(JziError, match="retrieval: .*uniform|retrieval: .*blank"):
        after.raw_estimate(np.full((40, 40, 3), 128, np.uint8))


def test_the_measurement_keeps_the_views_holding_the_mass_and_makes_the_rest_uniform():
    from jzi_ros.geo import CellTree
    from jzi_ros.inference.measurement import Measurement

    peaked = np.full(4096, 1e-8)
    peaked[[7, 300, 2000]] = [0.6, 0.3, 0.1 - 4093e-8]
    assert list(measured_views(peaked)) == [7, 300, 2000]  # 99.9 % in three views
    assert list(measured_views(peaked, mass=0.85)) == [7, 300]
    assert list(measured_views(peaked, mass=2.0, most=2)) == [7, 300]  # the k best
    flat = np.random.default_rng(0).dirichlet(np.ones(4096))
    kept = measured_views(flat)
    assert len(kept) == MAX_MEASURED_VIEWS
    assert set(kept) == set(np.argsort(-flat)[:MAX_MEASURED_VIEWS])  # the most probable
    # as a measurement: kept views carry their own mass, every other cell the background's
    tree = CellTree(40.0, -83.0, 10_000.0, grid=4, depth=4)
    measurement = Measurement.from_cells(tree, 3, kept, flat[kept])
    assert measurement.background == pytest.approx(1.0 - flat[kept].sum())
    side = tree.cell_side(3)
    centre = [tree.cell_center_local(tree.path_of_view(tree.level_offsets[3] + int(i)))
              for i in (kept[0], np.setdiff1d(np.arange(4096), kept)[0])]
    density = measurement.densities(tree, np.array([c[0] for c in centre]),
                                    np.array([c[1] for c in centre]))
    uniform = measurement.background / tree.size_m ** 2
    assert density[0] == pytest.approx(flat[kept[0]] / side ** 2 + uniform)
    assert density[1] == pytest.approx(uniform)


@pytest.mark.slow
def test_replay_fuses_the_retrieval_measurement(tmp_path, capsys):
    from jzi_ros.cli.main import main
    from jzi_ros.demo.bag import GT_TOPIC, IMAGE_TOPIC, write_bag
    from jzi_ros.demo.odometry import ODOM_TOPIC, simulate

    pyramid = make_tiny_map(tmp_path)
    checkpoint = save_identity_retrieval(pyramid, tmp_path / "identity.safetensors")
    tree, n, t0 = pyramid.tree, 10, 1_700_000_000 * 10**9
    stamps = t0 + np.arange(n, dtype=np.int64) * 10**9
    cells = [finest_paths(tree)[5]] * n  # hovering over one view's cell (400 m cells)
    track = np.array([tree.cell_center_local(c) for c in cells])
    frames = [(int(s), np.ascontiguousarray(pyramid.view(c)), (e, nn, 100.0))
              for s, c, (e, nn) in zip(stamps, cells, track)]
    bag = write_bag(tmp_path / "bag", tree, frames, odometry=simulate(0, track, stamps))
    out = tmp_path / "report"
    assert main(["replay", str(bag), "--map", str(pyramid.path), "--method", "retrieval",
                 "--retrieval-model", str(checkpoint), "--image-topic", IMAGE_TOPIC,
                 "--gt-topic", GT_TOPIC, "--fusion", "--odom-topic", ODOM_TOPIC, "--out",
                 str(out), "--no-progress", "--no-plots"]) == 0
    printed = capsys.readouterr().out
    assert "fused, random walk" in printed and "fused, odometry" in printed
    report = json.loads((out / "report.json").read_text())
    runs = report["fusion"]["runs"]
    assert set(runs) == {"single_frame", "fused_random_walk", "fused_odometry"}
    # every frame is the map view the identity model retrieves: the single frame is at the
    # cell centre, the filters fed that measurement stay inside the cell
    assert runs["single_frame"]["all"]["median_m"] == pytest.approx(0.0, abs=1e-6)
    side = tree.cell_side(tree.depth - 1)
    for name in ("fused_random_walk", "fused_odometry"):
        assert runs[name]["all"]["count"] == n
        assert runs[name]["all"]["median_m"] < side / 2
