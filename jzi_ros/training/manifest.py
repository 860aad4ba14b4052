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
Dataset manifests: one row per ground image with its GPS position (CSV or JSONL).

Columns / keys: ``image`` (path relative to the manifest), ``latitude``, ``longitude``, and
optionally ``heading`` (degrees), ``time`` (free text or seconds), ``split`` ("train",
"val" or "test"; default "train"), ``hfov`` (the camera's horizontal field of view, degrees:
refinement's intrinsics when no others are given), and for rendered views ``pitch`` (degrees
below the horizon), ``altitude`` (metres above ground) and ``source`` (the raster it was
rendered from). Labels
(action paths) are not stored: they are computed from latitude/longitude with the map's cell
tree, so one manifest serves any map.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field, replace
import json
import math
import os
from pathlib import Path

import numpy as np

from jzi_ros.errors import JziError
from jzi_ros.files import atomic_open
from jzi_ros.geo import CellTree

SPLITS = ("train", "val", "test")
COLUMNS = ("image", "latitude", "longitude", "heading", "time", "split", "pitch", "altitude",
           "source", "hfov")


@dataclass(frozen=True)
class Sample:
    image: Path
    latitude: float
    longitude: float
    heading: float | None = None
    time: str | None = None
    split: str = "train"
    pitch: float | None = None
    altitude: float | None = None
    source: str | None = None
    hfov: float | None = None  # horizontal field of view, degrees


@dataclass
class LabeledSamples:
    """Samples inside the map's root square with their action paths ``int64 [N, D]``."""

    samples: list[Sample]
    paths: np.ndarray
    skipped: list[Sample] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.samples)

    def subset(self, indices) -> "LabeledSamples":
        indices = list(indices)
        return LabeledSamples([self.samples[i] for i in indices],
                              self.paths[indices].reshape(len(indices), self.paths.shape[1]))


def _number(value, name: str, where: str, optional: bool = False) -> float | None:
    if optional and (value is None or value == ""):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        raise JziError(f"{where}: {name} must be a finite number, got {value!r}")
    return number


def _sample(row: dict, base: Path, where: str) -> Sample:
    if not row.get("image"):
        raise JziError(f"{where}: missing 'image' (path of the ground image)")
    latitude = _number(row.get("latitude"), "latitude", where)
    longitude = _number(row.get("longitude"), "longitude", where)
    if not -90 <= latitude <= 90 or not -180 <= longitude <= 180:
        raise JziError(f"{where}: latitude/longitude {latitude}, {longitude} out of range")
    split = str(row.get("split") or "train").strip().lower()
    if split not in SPLITS:
        raise JziError(f"{where}: split {split!r} is not one of {SPLITS}")
    time, source = row.get("time"), row.get("source")
    hfov = _number(row.get("hfov"), "hfov", where, optional=True)
    if hfov is not None and not 0 < hfov < 180:
        raise JziError(f"{where}: hfov {hfov} is not a field of view in degrees (0, 180)")
    return Sample(image=(base / str(row["image"])).resolve(), latitude=latitude,
                  longitude=longitude, heading=_number(row.get("heading"), "heading", where,
                                                       optional=True),
                  time=None if time in (None, "") else str(time), split=split,
                  pitch=_number(row.get("pitch"), "pitch", where, optional=True),
                  altitude=_number(row.get("altitude"), "altitude", where, optional=True),
                  source=None if source in (None, "") else str(source), hfov=hfov)


def read_manifest(path: str | os.PathLike) -> list[Sample]:
    """Read a .csv or .jsonl manifest; image paths are resolved against its directory."""
    path = Path(path)
    if not path.is_file():
        raise JziError(f"dataset manifest {path} does not exist")
    base = path.parent
    samples = []
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                where = f"dataset manifest {path} line {number}"
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    raise JziError(f"{where}: not valid JSON ({err})") from None
                if not isinstance(row, dict):
                    raise JziError(f"{where}: expected a JSON object per line")
                samples.append(_sample(row, base, where))
    elif path.suffix.lower() == ".csv":
        with open(path, encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            missing = {"image", "latitude", "longitude"} - set(reader.fieldnames or ())
            if missing:
                raise JziError(f"dataset manifest {path}: missing column(s) {sorted(missing)}; "
                               f"expected a header with image, latitude, longitude")
            for number, row in enumerate(reader, 2):
                samples.append(_sample(row, base, f"dataset manifest {path} line {number}"))
    else:
        raise JziError(f"dataset manifest {path}: expected a .csv or .jsonl file")
    if not samples:
        raise JziError(f"dataset manifest {path} has no samples")
    return samples


def write_manifest(path: str | os.PathLike, samples: list[Sample]) -> None:
    """Write a CSV manifest (atomic) with image paths relative to its directory."""
    path = Path(path)
    base = path.parent.resolve()
    with atomic_open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for s in samples:
            image = os.path.relpath(Path(s.image).resolve(), base)
            writer.writerow([image, repr(s.latitude), repr(s.longitude),
                             "" if s.heading is None else repr(s.heading),
                             s.time or "", s.split,
                             "" if s.pitch is None else repr(s.pitch),
                             "" if s.altitude is None else repr(s.altitude), s.source or "",
                             "" if s.hfov is None else repr(s.hfov)])


def label_samples(samples: list[Sample], tree: CellTree) -> LabeledSamples:
    """Label samples inside the root square with action paths; others go to ``skipped``."""
    kept, paths, skipped = [], [], []
    for sample in samples:
        path = tree.try_path_of(sample.latitude, sample.longitude)
        if path is None:
            skipped.append(sample)
        else:
            kept.append(sample)
            paths.append(path)
    array = np.asarray(paths, dtype=np.int64).reshape(len(kept), tree.depth)
    return LabeledSamples(kept, array, skipped)


def samples_in_map(path: str | os.PathLike, tree: CellTree, split: str = "all"
                   ) -> list[Sample]:
    """Return a manifest's rows of ``split`` (``all``: every row) that lie inside the root."""
    samples = [s for s in read_manifest(path) if split == "all" or s.split == split]
    return label_samples(samples, tree).samples


def split_train_val(labeled: LabeledSamples, val_fraction: float, seed: int
                    ) -> tuple[LabeledSamples, LabeledSamples]:
    """Use the manifest's own split when it names validation rows; else a seeded random share."""
    splits = [s.split for s in labeled.samples]
    train = [i for i, s in enumerate(splits) if s == "train"]
    val = [i for i, s in enumerate(splits) if s == "val"]
    if not val and val_fraction > 0 and len(train) > 1:
        order = np.random.default_rng(seed).permutation(train)
        count = min(len(train) - 1, max(1, int(round(val_fraction * len(train)))))
        val, train = sorted(order[:count].tolist()), sorted(order[count:].tolist())
    return labeled.subset(train), labeled.subset(val)


def write_held_out(path: str | os.PathLike, labeled: LabeledSamples,
                   val: LabeledSamples) -> bool:
    """
    Write the rows ``val_fraction`` held out of the training split as a ``val`` manifest.

    Without it the held-out rows exist only inside the run, and ``jzi localize --calibrate``
    finds no validation frames in the original manifest. Returns False (writes nothing) when
    the manifest named its own validation rows or none were held out.
    """
    if not len(val) or any(s.split == "val" for s in labeled.samples):
        return False
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_manifest(path, [replace(s, split="val") for s in val.samples])
    return True
