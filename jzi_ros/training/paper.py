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
Importer for the Just Zoom In paper's benchmark layout.

The paper's metadata CSV has ``image_id, latitude, longitude, sequence`` (the ground-truth
action path) and its images are named ``<image_id>_undistorted.jpg``. Its tree is a 10 km
square centred 2 km east of (38.8936, -77.0116) over Washington DC, 4x4 grid, depth 4.
The importer writes one of our manifests and checks that the CSV's ``sequence`` equals the
path our cell tree computes, so a mismatch in geometry is caught before training.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
import os
from pathlib import Path
import re

from jzi_ros.errors import JziError
from jzi_ros.geo import CellTree, offset_latlon
from jzi_ros.training.manifest import Sample, SPLITS, write_manifest

REQUIRED = ("image_id", "latitude", "longitude")


def paper_tree() -> CellTree:
    """Return the paper's DC tree: 10 km root 2 km east of (38.8936, -77.0116), K=4, D=4."""
    lat, lon = offset_latlon(38.8936, -77.0116, 2000.0, 0.0)
    return CellTree(lat, lon, 10000.0, grid=4, depth=4)


def parse_sequence(text: str) -> tuple[int, ...]:
    """'7 6 6 5', '[7, 6, 6, 5]', '7,6,6,5' or '7-6-6-5' -> (7, 6, 6, 5)."""
    parts = re.findall(r"-?\d+", str(text))
    if not parts or re.sub(r"[\d\s,;\[\]()\-_]", "", str(text)):
        raise JziError(f"sequence {text!r}: expected integers such as '7 6 6 5' or "
                       f"'[7, 6, 6, 5]'")
    return tuple(int(p) for p in parts)


@dataclass
class ImportReport:
    rows: int = 0
    written: int = 0
    missing_images: list[str] = field(default_factory=list)
    outside_root: list[str] = field(default_factory=list)
    sequence_checked: int = 0
    sequence_mismatches: list[tuple[str, tuple, tuple]] = field(default_factory=list)

    def summary(self) -> str:
        text = (f"{self.rows} rows, {self.written} written, "
                f"{len(self.missing_images)} without image, "
                f"{len(self.outside_root)} outside the root square, "
                f"sequence column checked on {self.sequence_checked} rows: "
                f"{len(self.sequence_mismatches)} mismatch(es)")
        if self.sequence_mismatches:
            image_id, ours, theirs = self.sequence_mismatches[0]
            text += f" (first: {image_id} ours {list(ours)} vs csv {list(theirs)})"
        return text


def import_paper(csv_path: str | os.PathLike, images_dir: str | os.PathLike,
                 manifest_out: str | os.PathLike, split: str = "train",
                 tree: CellTree | None = None, require_images: bool = True) -> ImportReport:
    """
    Convert the paper's metadata CSV into a manifest at ``manifest_out``.

    Rows whose image is missing (when ``require_images``) or that fall outside ``tree``'s
    root (default: the paper's tree) are reported and left out. Raises JziError when the CSV's
    ``sequence`` disagrees with our tree on any row: the data and the tree do not match.
    """
    csv_path, images_dir = Path(csv_path), Path(images_dir)
    if split not in SPLITS:
        raise JziError(f"--split {split!r} is not one of {SPLITS}")
    if not csv_path.is_file():
        raise JziError(f"paper metadata CSV {csv_path} does not exist")
    if require_images and not images_dir.is_dir():
        raise JziError(f"paper image directory {images_dir} does not exist")
    tree = tree or paper_tree()
    report, samples = ImportReport(), []
    with open(csv_path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip() for c in reader.fieldnames or ()]
        reader.fieldnames = columns
        missing = [c for c in REQUIRED if c not in columns]
        if missing:
            raise JziError(f"paper metadata CSV {csv_path}: missing column(s) {missing}; "
                           f"expected image_id, latitude, longitude[, sequence]")
        for number, row in enumerate(reader, 2):
            report.rows += 1
            image_id = str(row["image_id"]).strip()
            where = f"paper metadata CSV {csv_path} line {number}"
            try:
                lat, lon = float(row["latitude"]), float(row["longitude"])
            except (TypeError, ValueError):
                raise JziError(f"{where}: latitude/longitude {row['latitude']!r}, "
                               f"{row['longitude']!r} are not numbers") from None
            image = images_dir / f"{image_id}_undistorted.jpg"
            if require_images and not image.is_file():
                report.missing_images.append(image_id)
                continue
            path = tree.try_path_of(lat, lon)
            if path is None:
                report.outside_root.append(image_id)
                continue
            if row.get("sequence") not in (None, ""):
                theirs = parse_sequence(row["sequence"])
                report.sequence_checked += 1
                if theirs != path:
                    report.sequence_mismatches.append((image_id, path, theirs))
            samples.append(Sample(image=image, latitude=lat, longitude=lon, split=split))
    if report.sequence_mismatches:
        raise JziError(f"paper metadata CSV {csv_path}: the 'sequence' column disagrees with "
                       f"the cell tree: {report.summary()}")
    if not samples:
        raise JziError(f"paper metadata CSV {csv_path}: no usable rows ({report.summary()})")
    write_manifest(manifest_out, samples)
    report.written = len(samples)
    return report
