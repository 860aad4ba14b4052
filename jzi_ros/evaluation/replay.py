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
Replay a ROS 2 bag through a Localizer: camera frames in, one record per frame out.

``replay_bag(bag, localizer, options)`` is the whole job as a plain function (the CLI and the
demo both call it with an already-constructed Localizer). It never writes anything; the report
(:mod:`jzi_ros.evaluation.report`) and the output bag (:mod:`jzi_ros.evaluation.outbag`) are
made from its :class:`ReplayResult`. Ctrl-C stops the loop and returns the partial result with
``interrupted=True``, so the caller can still write a report.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
import logging
import math
from pathlib import Path
import time
from typing import Any, Iterator, Protocol

import numpy as np
from tqdm import tqdm

from jzi_ros.errors import BadImageError, JziError
from jzi_ros.evaluation.bags import (COMPRESSED_TYPE, deserialize, FrameScan, IMAGE_TYPES,
                                     iter_frames, NAVSATFIX_TYPE, open_bag, require_topic,
                                     scan_frames, select_frames)
from jzi_ros.evaluation.groundtruth import GroundTruth, GtSample, read_ground_truth
from jzi_ros.geo import CellTree
from jzi_ros.inference.fix import Fix
from jzi_ros.inference.messages import compressed_msg_to_rgb, image_msg_to_rgb
from jzi_ros.inference.motion import FRAME_HEADING_MAX_AGE_S
from jzi_ros.inference.refine_tracking import sequence_options

log = logging.getLogger(__name__)

# Why a selected frame did not make it into the metrics (keys of the report's skip table).
SKIP_CORRUPT = "corrupt_message"
SKIP_BAD_IMAGE = "bad_image"
SKIP_NO_GT = "no_ground_truth"
SKIP_GT_OUTSIDE = "gt_outside_map"
SKIP_REASONS = {
    SKIP_CORRUPT: "message could not be deserialized",
    SKIP_BAD_IMAGE: "image could not be decoded or localized (BadImageError)",
    SKIP_NO_GT: "no ground-truth fix within the tolerance (localized, not scored)",
    SKIP_GT_OUTSIDE: "ground truth outside the map's root square (localized, not scored)",
}


class LocalizerLike(Protocol):
    """What replay needs of :class:`jzi_ros.inference.localizer.Localizer`."""

    tree: CellTree
    backend_name: str

    def localize(self, image_rgb: np.ndarray) -> Fix: ...


@dataclass
class ReplayOptions:
    """What to replay. Times are seconds; ``start_s`` counts from the first image stamp."""

    image_topic: str
    gt_topic: str
    every: int = 1
    start_s: float = 0.0
    duration_s: float | None = None
    limit: int | None = None
    gt_tolerance_s: float = 0.5
    progress: bool = True
    fusion: Any = None  # fusion_replay.FusionOptions: also run temporal filters
    # a north-up model's frame headings (bag_heading.HeadingOptions); other models need none
    heading: Any = None

    def validate(self) -> None:
        checks = [("every", self.every, self.every >= 1, "an integer >= 1"),
                  ("start", self.start_s, self.start_s >= 0, "seconds >= 0"),
                  ("duration", self.duration_s,
                   self.duration_s is None or self.duration_s > 0, "seconds > 0"),
                  ("limit", self.limit, self.limit is None or self.limit >= 1,
                   "an integer >= 1"),
                  ("gt-tolerance", self.gt_tolerance_s, self.gt_tolerance_s >= 0,
                   "seconds >= 0")]
        for name, value, ok, expected in checks:
            if not ok:
                raise JziError(f"replay option --{name}: got {value!r}, expected {expected}")


@dataclass
class FrameRecord:
    """One selected camera frame and what became of it."""

    index: int  # position in header-stamp order among the selected frames
    ordinal: int  # position among the image topic's messages in the bag
    stamp_ns: int  # header stamp (log time if the header was unreadable or zero)
    log_time_ns: int  # record time in the bag
    frame_id: str = ""
    fix: Fix | None = None  # None: the image never reached the localizer
    gt: GtSample | None = None
    skip: str = ""  # a SKIP_* key, empty when the frame is scored
    detail: str = ""  # the concrete reason (exception text, GT gap)
    decode_ms: float = 0.0  # message -> RGB array
    localize_ms: float = 0.0  # wall time of Localizer.localize
    measurement: Any = None  # fusion.Measurement of the frame (replays with fusion only)

    @property
    def used(self) -> bool:
        return not self.skip and self.fix is not None and self.gt is not None


@dataclass
class ReplayResult:
    """Everything a report or an output bag needs; no file has been written yet."""

    bag: Path
    options: ReplayOptions
    image_msgtype: str
    tree: CellTree
    backend: str
    frames_in_bag: int
    frames_selected: int
    ground_truth: GroundTruth
    records: list[FrameRecord] = field(default_factory=list)
    stamps_from_log_time: int = 0
    interrupted: bool = False
    wall_s: float = 0.0  # the whole replay, bag scanning included
    loop_s: float = 0.0  # the frame loop only: decode + localize (frames/s is based on this)
    fused: dict[str, list[Fix]] = field(default_factory=dict)  # run name -> fix per record
    fusion_config: Any = None
    fusion_fit: dict | None = None
    fusion_track: Any = None  # the bag's OdometryTrack (replays with --odom-topic)
    fusion_georef_sigma_m: float = 0.0  # the map's georeferencing 1-sigma in the fused fixes
    fusion_visual: Any = None  # the frames' VisualOdometry (replays with --visual-odometry)

    @property
    def used(self) -> list[FrameRecord]:
        return [r for r in self.records if r.used]

    @property
    def localized(self) -> list[FrameRecord]:
        return [r for r in self.records if r.fix is not None]

    def options_dict(self) -> dict[str, Any]:
        options = asdict(self.options)
        options.pop("fusion", None)  # reported in its own block
        return options


def _gt_for(gt: GroundTruth, tree: CellTree, stamp: int, tolerance_s: float
            ) -> tuple[GtSample | None, str, str]:
    """(sample, skip key, detail) for one stamp."""
    sample = gt.lookup(stamp, tolerance_s)
    if isinstance(sample, str):
        return None, SKIP_NO_GT, sample
    half = tree.size_m / 2
    if abs(sample.east_m) > half or abs(sample.north_m) > half:
        return sample, SKIP_GT_OUTSIDE, (f"ground truth {sample.east_m:.0f} m east, "
                                         f"{sample.north_m:.0f} m north of the map centre")
    return sample, "", ""


def _check_overlap(bag: Path, options: ReplayOptions, scan: FrameScan, selected: np.ndarray,
                   gt: GroundTruth, lookups: list[tuple[GtSample | None, str, str]]) -> None:
    if any(sample is not None for sample, _, _ in lookups):
        return
    stamps = scan.stamps_ns[selected] / 1e9
    g0, g1 = gt.span_s()
    raise JziError(
        f"bag {bag}: no selected image on {options.image_topic} has a ground-truth fix on "
        f"{options.gt_topic} within {options.gt_tolerance_s:g} s (images span header stamps "
        f"{stamps.min():.3f}..{stamps.max():.3f} s, ground truth {g0:.3f}..{g1:.3f} s); "
        "check --gt-topic, --start/--duration or --gt-tolerance")


def _select(reader: Any, bag: Path, tree: CellTree, options: ReplayOptions
            ) -> tuple[str, GroundTruth, FrameScan, np.ndarray,
                       list[tuple[GtSample | None, str, str]]]:
    """Check the topics, read the ground truth, select the frames and look up their GT."""
    msgtype = require_topic(reader, bag, options.image_topic, IMAGE_TYPES, "camera images",
                            "--image-topic")
    require_topic(reader, bag, options.gt_topic, (NAVSATFIX_TYPE,), "ground truth",
                  "--gt-topic")
    gt = read_ground_truth(reader, bag, options.gt_topic, tree)
    scan = scan_frames(reader, bag, options.image_topic, msgtype)
    selected = select_frames(scan, options.every, options.start_s, options.duration_s,
                             options.limit)
    if selected.size == 0:
        raise JziError(f"bag {bag}: no frame on {options.image_topic} within --start "
                       f"{options.start_s:g} s / --duration {options.duration_s} s "
                       f"(the topic has {scan.count} frames)")
    lookups = [_gt_for(gt, tree, int(scan.stamps_ns[o]), options.gt_tolerance_s)
               for o in selected]
    _check_overlap(bag, options, scan, selected, gt, lookups)
    return msgtype, gt, scan, selected, lookups


def is_north_up(localizer: Any) -> bool:
    """Tell whether ``localizer``'s model rotates frames by their heading (policy north-up)."""
    zoom = getattr(localizer, "localizer", localizer)  # the zoom under a RefiningLocalizer
    return getattr(getattr(zoom, "model_config", None), "heading", None) == "north-up"


def _frame_headings(reader: Any, bag: Path, options: ReplayOptions, scan: FrameScan,
                    selected: np.ndarray, track: Any = None, user: str = ""
                    ) -> list[float | None]:
    """
    Each selected frame's compass heading, from the bag's heading source.

    For a north-up model (``user`` empty), or for ``user`` (visual odometry: its frames are
    not skipped without one, that pair is left to the random walk).
    The sample nearest the frame's stamp, as the node takes it (None: none within
    ``FRAME_HEADING_MAX_AGE_S``; the frame is skipped). No source given: one JziError line.
    ``track``: the fusion's odometry, whose yaw samples the frames share when their source is
    the fusion's (as in the node; the bag is not read again).
    """
    from jzi_ros.evaluation.bag_heading import read_heading
    from jzi_ros.evaluation.fusion_replay import heading_options

    heading = options.heading
    if heading is None or heading.missing():
        who = (f"{user} turns each frame's motion into East/North by the frame's heading"
               if user else "the model is north-up (each frame is rotated by its heading)")
        raise JziError(
            f"bag {bag}: {who}, so replay needs the bag's heading source: "
            f"--heading-source imu --imu-topic TOPIC, "
            f"odometry --odom-topic TOPIC, or fixed --heading-yaw-deg YAW (a gimballed "
            f"camera); --camera-yaw-deg if the image top is not the body's forward axis")
    shared = track is not None and heading.same_samples(heading_options(options.fusion))
    series = track.heading if shared else read_heading(reader, bag, heading)
    camera_yaw_rad = math.radians(heading.camera_yaw_deg)
    return series.compass_many(scan.stamps_ns[selected], camera_yaw_rad)


def _no_heading(stamp_ns: int, options: ReplayOptions) -> str:
    return (f"no {options.heading.source} heading within {FRAME_HEADING_MAX_AGE_S:g} s of the "
            f"frame stamped {stamp_ns * 1e-9:.3f} s (the north-up model needs one)")


def labelled_frames(bag: str | Path, tree: CellTree, options: ReplayOptions,
                    north_up: bool = False
                    ) -> Iterator[tuple[np.ndarray, float, float, float | None]]:
    """
    Yield ``(image_rgb, latitude, longitude, heading_deg)`` for the frames of ``bag`` with GT.

    The frames replay would score (ground truth within the tolerance and inside the map),
    in header-stamp order; corrupt or undecodable frames are left out. ``heading_deg`` is the
    frame's compass heading from ``options.heading`` for a ``north_up`` model (frames without
    one are left out), else None. What calibration on a recorded flight reads (``jzi localize
    --calibrate BAG``).
    """
    options.validate()
    bag = Path(bag)
    with open_bag(bag) as reader:
        msgtype, _, scan, selected, lookups = _select(reader, bag, tree, options)
        headings = (_frame_headings(reader, bag, options, scan, selected) if north_up
                    else [None] * len(selected))
        to_rgb = compressed_msg_to_rgb if msgtype == COMPRESSED_TYPE else image_msg_to_rgb
        for index, (_, _, raw) in enumerate(iter_frames(reader, bag, options.image_topic,
                                                        selected)):
            sample, skip, _ = lookups[index]
            if skip or (north_up and headings[index] is None):
                continue
            try:
                rgb = to_rgb(deserialize(reader, raw, msgtype))
            except (ValueError, AttributeError, BadImageError):
                continue
            yield rgb, sample.latitude, sample.longitude, headings[index]


def replay_bag(bag: str | Path, localizer: LocalizerLike, options: ReplayOptions
               ) -> ReplayResult:
    """
    Localize the selected frames of ``bag`` and pair each with interpolated ground truth.

    Raises JziError for an unreadable bag, a missing/mistyped topic, GT that lies outside the
    map or never overlaps the selected frames. Corrupt messages and unusable images are
    recorded as skipped frames, never raised.
    """
    options.validate()
    bag = Path(bag)
    tree = localizer.tree
    began = time.perf_counter()
    with open_bag(bag) as reader:
        msgtype, gt, scan, selected, lookups = _select(reader, bag, tree, options)
        result = ReplayResult(bag, options, msgtype, tree, str(localizer.backend_name),
                              scan.count, int(selected.size), gt,
                              stamps_from_log_time=scan.from_log_time)
        track, seeded, georef, visual = None, None, 0.0, None
        if options.fusion is not None:
            from jzi_ros.evaluation.fusion_replay import read_odometry, SeededRuns
            from jzi_ros.maps.georef import georef_sigma_used
            track = read_odometry(reader, bag, options.fusion)
            # the value the localizer's refinement uses: the override, else the map's
            georef = georef_sigma_used(getattr(localizer, "pyramid", None),
                                       options.fusion.georef_sigma_m)
            if options.fusion.config.seed_beam:  # these filters localize inside the loop
                seeded = SeededRuns(localizer, options.fusion.config, track, georef)
            if options.fusion.visual_odometry is not None:
                from jzi_ros.inference.visual_odometry import VisualOdometry
                visual = VisualOdometry(options.fusion.visual_odometry,
                                        options.fusion.intrinsics)
        north_up = is_north_up(localizer)
        # a north-up model's frames are rotated by it; visual odometry turns image axes by it
        headings = (_frame_headings(reader, bag, options, scan, selected, track,
                                    "visual odometry" if not north_up else "")
                    if north_up or visual is not None else [None] * len(selected))
        to_rgb = compressed_msg_to_rgb if msgtype == COMPRESSED_TYPE else image_msg_to_rgb
        bar = tqdm(total=int(selected.size), unit="frame", desc="replay",
                   disable=not options.progress, dynamic_ncols=True)
        loop_began = time.perf_counter()
        try:
            frames = iter_frames(reader, bag, options.image_topic, selected)
            for index, (ordinal, log_time, raw) in enumerate(frames):
                gt_sample, skip, detail = lookups[index]
                record = FrameRecord(index, ordinal, int(scan.stamps_ns[ordinal]), log_time,
                                     gt=gt_sample, skip=skip, detail=detail)
                heading = headings[index]
                if north_up and heading is None:
                    record.skip, record.detail = SKIP_BAD_IMAGE, _no_heading(record.stamp_ns,
                                                                             options)
                    rgb = None
                else:
                    rgb = _localize_frame(reader, raw, msgtype, to_rgb, localizer, record,
                                          options.fusion is not None, heading)
                if seeded is not None:
                    seeded.frame(record, rgb, heading)
                if visual is not None and rgb is not None:
                    visual.add_frame(record.stamp_ns, rgb, heading)
                result.records.append(record)
                bar.update(1)
        except KeyboardInterrupt:
            result.interrupted = True
            log.warning("replay interrupted after %d of %d frames", len(result.records),
                        selected.size)
        finally:
            bar.close()
            result.loop_s = time.perf_counter() - loop_began
    if options.fusion is not None:
        from jzi_ros.evaluation.fusion_replay import fuse_replay
        fuse_replay(result, options.fusion, track, seeded, georef, visual)
    result.wall_s = time.perf_counter() - began
    return result


def _localize_frame(reader: Any, raw: bytes, msgtype: str, to_rgb: Any,
                    localizer: LocalizerLike, record: FrameRecord, measure: bool = False,
                    heading_deg: float | None = None) -> np.ndarray | None:
    """
    Fill ``record`` in place: decode, localize, or mark the frame skipped with why.

    Returns the decoded image when it was localized (None otherwise).
    """
    try:
        msg = deserialize(reader, raw, msgtype)
        record.frame_id = str(msg.header.frame_id)
    except (ValueError, AttributeError) as err:
        record.skip, record.detail = SKIP_CORRUPT, str(err)
        return None
    t0 = time.perf_counter()
    try:
        rgb = to_rgb(msg)
        t1 = time.perf_counter()
        record.decode_ms = (t1 - t0) * 1e3
        # a north-up model's heading (by keyword: the localizers' common interface); the
        # stamp for refinement's tracking between frames (sequence_options)
        options = {} if heading_deg is None else {"heading_deg": heading_deg}
        options.update(sequence_options(localizer, record.stamp_ns))
        if measure:
            record.fix, record.measurement = localizer.localize_measured(rgb, **options)
        else:
            record.fix = localizer.localize(rgb, **options)
        record.localize_ms = (time.perf_counter() - t1) * 1e3
    except BadImageError as err:
        record.skip, record.detail = SKIP_BAD_IMAGE, str(err)
        return None
    return rgb
