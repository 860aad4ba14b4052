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

"""The training loop: overfits a tiny synthetic set, resumes, re-embeds, runs under DDP."""
import json
import os
from pathlib import Path
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from jzi_ros.errors import JziError
from jzi_ros.inference.decode import beam_search
from jzi_ros.maps.pyramid import MapPyramid
from jzi_ros.model import ground_pixels, load_checkpoint
from jzi_ros.training.config import load_train_config
from jzi_ros.training.loop import train
from jzi_ros.training.manifest import label_samples, read_manifest, Sample, write_manifest
from jzi_ros.training.optim import lr_factor
from support import make_tiny_map, one_thread_torch, world_of

ROOT = Path(__file__).resolve().parents[1]


one_thread = pytest.fixture(autouse=True)(one_thread_torch)


def make_dataset(tmp_path, pyramid, count: int, seed: int = 0, outside: int = 0,
                 repeat: int = 1) -> Path:
    """
    Ground images rendered from the map's synthetic world at random points + a manifest.

    Each image is listed ``repeat`` times: more steps per epoch, fewer checkpoint writes.
    """
    world, tree = world_of(pyramid), pyramid.tree
    rng = np.random.default_rng(seed)
    images = Path(tmp_path) / "images"
    images.mkdir(exist_ok=True)
    samples = []
    half = tree.size_m / 2 - 1.0
    for i in range(count):
        east, north = rng.uniform(-half, half, 2)
        path = images / f"{i}.png"
        cv2.imwrite(str(path), world.ground_image(east, north)[..., ::-1])
        lat, lon = tree.to_latlon(east, north)
        samples += [Sample(path, float(lat), float(lon))] * repeat
    for i in range(outside):
        lat, lon = tree.to_latlon(tree.size_m, 0.0)
        samples.append(Sample(images / "0.png", float(lat), float(lon)))
    manifest = Path(tmp_path) / "manifest.csv"
    write_manifest(manifest, samples)
    return manifest


def _config(manifest, pyramid, out, *extra):
    return load_train_config(None, [f"manifest={manifest}", f"map={pyramid.path}",
                                    f"out={out}", "model_preset=tiny", "num_workers=0",
                                    "augment=false", *extra])


def _decode_training_set(checkpoint, manifest, pyramid):
    model, _ = load_checkpoint(checkpoint)
    pyramid = MapPyramid.open(pyramid.path)
    table = torch.from_numpy(pyramid.load_embeddings(model.encoder_hash()).astype(np.float32))
    labeled = label_samples(read_manifest(manifest), pyramid.tree)
    pixels = torch.stack([ground_pixels(np.ascontiguousarray(cv2.imread(str(s.image))[..., ::-1]),
                                        model.config) for s in labeled.samples])
    with torch.no_grad():
        paths, _ = beam_search(model, model.encode_ground(pixels), table, pyramid.tree, 1)
    return paths[:, 0].numpy(), labeled.paths


def test_lr_schedule_warms_up_then_decays():
    values = [lr_factor(s, 100, 10) for s in range(100)]
    assert values[0] == pytest.approx(0.1) and values[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(values[10:], values[11:]))
    assert values[-1] < 0.01


@pytest.mark.slow
def test_frozen_encoder_overfits_and_greedy_decoding_recovers_labels(tmp_path):
    pyramid = make_tiny_map(tmp_path, grid=4, depth=2)
    manifest = make_dataset(tmp_path, pyramid, 24, outside=2, repeat=8)
    out = tmp_path / "run"
    summary = train(_config(manifest, pyramid, out, "epochs=16", "batch_size=16", "lr=3e-3",
                            "label_smoothing=0", "val_fraction=0", "warmup=0.05",
                            "model.encoder.trainable_blocks=0"), progress=False)
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(history) == 16
    assert history[-1]["train_loss"] < 0.3 * history[0]["train_loss"]
    assert summary["skipped_outside_root"] == 2 and summary["train_samples"] == 24 * 8
    assert summary["encoder_frozen"] and summary["encoder_hash"] == pyramid.embeddings_hash()
    predicted, truth = _decode_training_set(out / "best.safetensors", manifest, pyramid)
    assert (predicted == truth).all(axis=1).mean() >= 0.9

    # a second run into the same directory is refused unless resumed
    with pytest.raises(JziError, match="already holds a training run"):
        train(_config(manifest, pyramid, out, "epochs=31"), progress=False)


@pytest.mark.slow
def test_trainable_encoder_validation_resume_and_reembedding(tmp_path):
    pyramid = make_tiny_map(tmp_path, grid=2, depth=3)
    manifest = make_dataset(tmp_path, pyramid, 20)
    out = tmp_path / "run"
    args = ("batch_size=8", "val_fraction=0.2", "best_metric=val_loss", "augment=true")
    first = train(_config(manifest, pyramid, out, "epochs=2", *args), progress=False)
    assert not first["encoder_frozen"] and first["val_samples"] == 4
    assert {"recall@25m", "recall@50m", "recall@100m", "exact@1", "exact@3",
            "val_loss"} <= set(first["final"])
    # the map's table was rewritten for the trained encoder of the shipped checkpoint
    best, metadata = load_checkpoint(out / "best.safetensors")
    assert MapPyramid.open(pyramid.path).embeddings_hash() == best.encoder_hash()
    assert metadata["tree"] == pyramid.tree.to_dict()

    resumed = train(_config(manifest, pyramid, out, "epochs=3", *args), resume=True,
                    progress=False)
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[2]["step"] == 3 * history[0]["step"]  # optimizer/step counters carried on
    assert resumed["epochs"] == 3
    last, metadata = load_checkpoint(out / "last.safetensors")
    assert metadata["epoch"] == 3


def test_resume_without_state_and_missing_images_are_clear_errors(tmp_path):
    pyramid = make_tiny_map(tmp_path)
    manifest = make_dataset(tmp_path, pyramid, 4)
    with pytest.raises(JziError, match="does not exist"):
        train(_config(manifest, pyramid, tmp_path / "run", "epochs=1"), resume=True,
              progress=False)
    (tmp_path / "images" / "2.png").unlink()
    with pytest.raises(JziError, match=r"1 of 4 image file\(s\) unusable: .*2.png does not exist"):
        train(_config(manifest, pyramid, tmp_path / "run", "epochs=1"), progress=False)


def test_cli_train_with_yaml_config(tmp_path):
    from jzi_ros.cli.main import main

    pyramid = make_tiny_map(tmp_path)
    manifest = make_dataset(tmp_path, pyramid, 6)
    (tmp_path / "run.yaml").write_text(
        f"manifest: {manifest.name}\nmap: {pyramid.path.name}\nout: run\n"
        "model_preset: tiny\nnum_workers: 0\nepochs: 1\nbatch_size: 4\nval_fraction: 0.3\n"
        "model: {encoder: {trainable_blocks: 0}}\n")
    assert main(["train", "--config", str(tmp_path / "run.yaml"), "--no-progress"]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["epochs"] == 1 and summary["val_samples"] == 2
    assert main(["train", "--config", str(tmp_path / "run.yaml"), "epochz=2"]) == 2


@pytest.mark.slow
def test_ddp_two_processes_gloo(tmp_path):
    pyramid = make_tiny_map(tmp_path)
    manifest = make_dataset(tmp_path, pyramid, 8)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
               "--master_port", str(29500 + os.getpid() % 1000), "-m", "jzi_ros.cli.main",
               "train", "--no-progress", f"manifest={manifest}", f"map={pyramid.path}",
               f"out={tmp_path / 'run'}", "model_preset=tiny", "num_workers=0", "epochs=2",
               "batch_size=2", "val_fraction=0.25", "model.encoder.trainable_blocks=0"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    history = [json.loads(line)
               for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    # 6 training samples over 2 ranks of batch 2: 2 steps per epoch on each rank
    assert [h["step"] for h in history] == [2, 4]
    assert history[-1]["val_samples"] == 2
    load_checkpoint(tmp_path / "run" / "best.safetensors")


@pytest.mark.gpu
@pytest.mark.parametrize("amp", ["auto", "fp16"])
def test_cuda_mixed_precision_training(tmp_path, amp):
    pyramid = make_tiny_map(tmp_path)
    manifest = make_dataset(tmp_path, pyramid, 8)
    summary = train(_config(manifest, pyramid, tmp_path / "run", "epochs=2", "batch_size=4",
                            "device=cuda", f"amp={amp}", "val_fraction=0.25"), progress=False)
    assert np.isfinite(summary["final"]["train_loss"]) and summary["val_samples"] == 2
    model, _ = load_checkpoint(tmp_path / "run" / "best.safetensors", device="cuda")
    assert next(model.parameters()).dtype == torch.float32
