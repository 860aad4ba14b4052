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

"""Manifests, labels, the paper importer, augmentation and training-config parsing."""
import json

import numpy as np
import pytest
import torch

from jzi_ros.errors import JziError
from jzi_ros.geo import CellTree
from jzi_ros.training.augment import augment, GROUND, MAP_VIEW
from jzi_ros.training.config import load_train_config
from jzi_ros.training.data import Collate, prefix_view_indices, ZoomDataset
from jzi_ros.training.manifest import (label_samples, read_manifest, Sample, split_train_val,
                                       write_manifest)
from jzi_ros.training.paper import import_paper, paper_tree, parse_sequence
from support import make_tiny_map, random_rgb

# Rows of the paper's DC metadata with their published action sequences.
PAPER_ROWS = [("a1", 38.908513, -76.940898, "7 6 6 5"),
              ("b2", 38.918031, -76.94114, "[3, 14, 10, 9]")]


def test_paper_tree_reproduces_published_sequences(tmp_path):
    csv_path = tmp_path / "meta.csv"
    lines = ["image_id,latitude,longitude,sequence"]
    lines += [f'{i},{lat},{lon},"{seq}"' for i, lat, lon, seq in PAPER_ROWS]
    lines.append("far,40.0,-75.0,1 2 3 4")  # outside the 10 km root: reported, skipped
    csv_path.write_text("\n".join(lines) + "\n")
    images = tmp_path / "images"
    images.mkdir()
    for image_id in ("a1", "b2", "far"):
        (images / f"{image_id}_undistorted.jpg").write_bytes(b"jpeg")
    out = tmp_path / "data" / "train.csv"
    report = import_paper(csv_path, images, out, split="val")
    assert report.sequence_checked == 2 and not report.sequence_mismatches
    assert report.outside_root == ["far"] and report.written == 2
    samples = read_manifest(out)
    assert [s.image for s in samples] == [(images / "a1_undistorted.jpg").resolve(),
                                          (images / "b2_undistorted.jpg").resolve()]
    assert {s.split for s in samples} == {"val"}
    labeled = label_samples(samples, paper_tree())
    assert labeled.paths.tolist() == [[7, 6, 6, 5], [3, 14, 10, 9]]


def test_paper_importer_rejects_a_disagreeing_sequence_and_missing_images(tmp_path):
    csv_path = tmp_path / "meta.csv"
    csv_path.write_text("image_id,latitude,longitude,sequence\nx,38.908513,-76.940898,7 6 6 4\n")
    with pytest.raises(JziError, match=r"disagrees.*ours \[7, 6, 6, 5\] vs csv \[7, 6, 6, 4\]"):
        import_paper(csv_path, tmp_path, tmp_path / "m.csv", require_images=False)
    with pytest.raises(JziError, match="no usable rows.*1 without image"):
        import_paper(csv_path, tmp_path, tmp_path / "m.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("id,lat,lon\n")
    with pytest.raises(JziError, match="missing column"):
        import_paper(bad, tmp_path, tmp_path / "m.csv")


def test_parse_sequence_formats():
    for text in ("7 6 6 5", "[7, 6, 6, 5]", "7,6,6,5", "(7;6;6;5)"):
        assert parse_sequence(text) == (7, 6, 6, 5)
    with pytest.raises(JziError, match="expected integers"):
        parse_sequence("seven")


def test_manifest_csv_and_jsonl_with_out_of_root_samples(tmp_path):
    tree = CellTree(38.9, -77.03, 1600.0, grid=4, depth=2)
    inside = tree.to_latlon(100.0, -300.0)
    (tmp_path / "m.jsonl").write_text(
        json.dumps({"image": "a.png", "latitude": float(inside[0]),
                    "longitude": float(inside[1]), "heading": 90, "split": "val"}) + "\n\n"
        + json.dumps({"image": "sub/b.png", "latitude": 10.0, "longitude": 10.0}) + "\n")
    samples = read_manifest(tmp_path / "m.jsonl")
    assert samples[0].image == (tmp_path / "a.png").resolve() and samples[0].heading == 90
    assert samples[1].split == "train" and samples[1].heading is None
    labeled = label_samples(samples, tree)
    assert len(labeled) == 1 and len(labeled.skipped) == 1
    assert tuple(labeled.paths[0]) == tree.path_of(*inside)
    write_manifest(tmp_path / "copy" / "m.csv", samples)
    assert read_manifest(tmp_path / "copy" / "m.csv") == samples

    (tmp_path / "bad.csv").write_text("image,latitude,longitude\na.png,nan,3\n")
    with pytest.raises(JziError, match=r"bad.csv line 2: latitude must be a finite number"):
        read_manifest(tmp_path / "bad.csv")
    (tmp_path / "bad2.csv").write_text("image,latitude\na.png,3\n")
    with pytest.raises(JziError, match=r"missing column\(s\) \['longitude'\]"):
        read_manifest(tmp_path / "bad2.csv")
    (tmp_path / "bad3.csv").write_text("image,latitude,longitude,split\na.png,1,2,dev\n")
    with pytest.raises(JziError, match="split 'dev'"):
        read_manifest(tmp_path / "bad3.csv")
    (tmp_path / "fov.csv").write_text(
        "image,latitude,longitude,hfov\na.png,1,2,72.5\nb.png,1,2,\n")
    assert [r.hfov for r in read_manifest(tmp_path / "fov.csv")] == [72.5, None]
    (tmp_path / "bad4.csv").write_text("image,latitude,longitude,hfov\na.png,1,2,200\n")
    with pytest.raises(JziError, match=r"bad4.csv line 2: hfov 200.0 is not a field of view"):
        read_manifest(tmp_path / "bad4.csv")


def test_split_uses_manifest_val_rows_or_a_seeded_share():
    samples = [Sample(f"{i}.png", 0.0, 0.0, split="val" if i < 2 else "train")
               for i in range(10)]
    labeled = label_samples(samples, CellTree(0.0, 0.0, 1000.0, grid=2, depth=2))
    train, val = split_train_val(labeled, 0.5, seed=0)
    assert [s.image for s in val.samples] == ["0.png", "1.png"] and len(train) == 8
    plain = label_samples([Sample(f"{i}.png", 0.0, 0.0) for i in range(10)],
                          CellTree(0.0, 0.0, 1000.0, grid=2, depth=2))
    a = split_train_val(plain, 0.3, seed=1)
    b = split_train_val(plain, 0.3, seed=1)
    assert len(a[1]) == 3 and len(a[0]) == 7
    assert [s.image for s in a[1].samples] == [s.image for s in b[1].samples]


def test_augment_changes_ground_images_and_keeps_shapes():
    image = random_rgb(48, 96, seed=2)
    rng = np.random.default_rng(0)
    outs = [augment(image, GROUND, rng) for _ in range(8)]
    assert all(o.shape == image.shape and o.dtype == np.uint8 for o in outs)
    assert sum(not np.array_equal(o, image) for o in outs) >= 6
    view = random_rgb(32, 32, seed=3)
    light = [augment(view, MAP_VIEW, np.random.default_rng(s)) for s in range(8)]
    heavy = [augment(view, GROUND, np.random.default_rng(s)) for s in range(8)]

    def change(images):
        return np.mean([np.abs(o.astype(int) - view).mean() for o in images])
    assert change(light) < change(heavy)
    same = augment(image, GROUND, np.random.default_rng(5))
    assert np.array_equal(same, augment(image, GROUND, np.random.default_rng(5)))


def test_dataset_and_collate_shapes(tmp_path):
    import cv2

    from jzi_ros.model import ModelConfig
    pyramid = make_tiny_map(tmp_path, grid=4, depth=2)
    tree = pyramid.tree
    samples = []
    for i, (east, north) in enumerate([(100.0, 100.0), (-500.0, 300.0), (700.0, -700.0)]):
        path = tmp_path / f"{i}.png"
        cv2.imwrite(str(path), random_rgb(seed=i))
        lat, lon = tree.to_latlon(east, north)
        samples.append(Sample(path, float(lat), float(lon)))
    labeled = label_samples(samples, tree)
    config = ModelConfig.preset("tiny", grid=4, depth=2)
    dataset = ZoomDataset(labeled, tree, config, augment=True)
    item = dataset[1]
    assert item["ground"].shape == (2, 3, 56, 56)
    assert item["view_rows"].tolist() == [0, tree.view_index(tuple(labeled.paths[1][:1]))]
    batch = Collate(pyramid.path, config, load_views=True, augment_views=False)(
        [dataset[i] for i in range(3)])
    assert batch["ground"].shape == (3, 2, 3, 56, 56)
    # root view shared: 1 + three distinct level-1 views at most
    assert batch["views"].shape[0] == len(torch.unique(batch["view_rows"]))
    assert torch.equal(torch.unique(batch["view_rows"])[batch["view_slots"]],
                       batch["view_rows"])
    rows = prefix_view_indices(tree, labeled.paths)
    assert rows[:, 0].tolist() == [0, 0, 0]


def test_train_config_yaml_overrides_and_errors(tmp_path):
    (tmp_path / "run.yaml").write_text(
        "manifest: data/m.csv\nmap: maps/m\nout: runs/a\nlr: 3e-4\n"
        "model: {encoder: {trainable_blocks: 1}}\n")
    config = load_train_config(tmp_path / "run.yaml",
                               ["epochs=3", "model.decoder.layers=1", "augment=false"])
    assert config.manifest == str((tmp_path / "data" / "m.csv").resolve())
    assert config.lr == 3e-4 and config.epochs == 3 and config.augment is False
    model = config.model_config()
    assert model.encoder.trainable_blocks == 1 and model.decoder.layers == 1
    with pytest.raises(JziError, match=r"unknown key\(s\) \['epoch'\]"):
        load_train_config(tmp_path / "run.yaml", ["epoch=3"])
    with pytest.raises(JziError, match="expected key=value"):
        load_train_config(tmp_path / "run.yaml", ["epochs"])
    with pytest.raises(JziError, match="batch_size must be an integer >= 1"):
        load_train_config(tmp_path / "run.yaml", ["batch_size=0"])
    with pytest.raises(JziError, match="lr must be a number"):
        load_train_config(tmp_path / "run.yaml", ["lr=fast"])
    with pytest.raises(JziError, match="best_metric"):
        load_train_config(tmp_path / "run.yaml", ["best_metric=accuracy"])
    with pytest.raises(JziError, match=r"model.encoder: unknown key"):
        load_train_config(tmp_path / "run.yaml", ["model.encoder.layers=2"])
    with pytest.raises(JziError, match="'out' is required"):
        load_train_config(None, ["manifest=a.csv", "map=m"])
    with pytest.raises(JziError, match="does not exist"):
        load_train_config(tmp_path / "missing.yaml")


def test_cli_import_paper(tmp_path, capsys):
    from jzi_ros.cli.main import main

    csv_path = tmp_path / "meta.csv"
    csv_path.write_text("image_id,latitude,longitude,sequence\n"
                        + "".join(f'{i},{lat},{lon},"{seq}"\n' for i, lat, lon, seq in PAPER_ROWS))
    out = tmp_path / "train.csv"
    assert main(["train", "--import-paper", str(csv_path), "--images", str(tmp_path),
                 "--manifest-out", str(out), "--allow-missing-images"]) == 0
    assert "2 written" in capsys.readouterr().out
    assert len(read_manifest(out)) == 2
    assert main(["train", "--import-paper", str(csv_path)]) == 2
    assert "--images DIR and --manifest-out" in capsys.readouterr().err
