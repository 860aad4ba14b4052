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
The node's parameters in one ROS-free table.

The node declares from it and validates every value at declaration (a bad value in a params file
is one line and exit 1); the config test checks ``config/localize.yaml`` against it, and the
parameter table in docs/ros.md is generated from it (tools/update_docs.py). Params files reach
the node the standard ROS way (``parameters=[params_file, overrides]`` in launch,
``--params-file`` with ``ros2 run``), so every file ROS accepts works: namespaced keys, ``/**``
wildcards, ``qos_overrides``.

Topic defaults are relative ("jzi/fix" is /jzi/fix in the root namespace) so that a launch
``namespace`` moves them along with the node.

Read-only parameters (paths, topics, model settings) are fixed at start-up because changing them
needs a reload or a new subscription; the others may be changed at runtime with ``ros2 param
set`` and are validated by :meth:`NodeSettings.from_values` first.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
import math
from typing import Any, Mapping

from jzi_ros.config import reject_unknown
from jzi_ros.errors import JziError
from jzi_ros.inference.messages import COVARIANCE_TYPES
from jzi_ros.inference.options import BACKENDS, CPU_GRAPHS, POSITION_MODES
from jzi_ros.inference.refine import RefineConfig
from jzi_ros.maps.features import DETECTORS
from jzi_ros.threads import DEFAULT_THREADS

NODE_NAME = "jzi_localizer"
IMAGE_TRANSPORTS = ("raw", "compressed")
RELIABILITIES = ("reliable", "best_effort")


@dataclass(frozen=True)
class ParamSpec:
    """One declared parameter; its ROS type is the type of ``default``."""

    name: str
    default: bool | int | float | str
    description: str
    read_only: bool = True
    min: float | None = None  # noqa: A003  inclusive range (FloatingPointRange / IntegerRange)
    max: float | None = None  # noqa: A003
    choices: tuple[str, ...] = ()

    def type_name(self) -> str:
        return type(self.default).__name__


def _p(name: str, default: Any, description: str, **kw: Any) -> ParamSpec:
    return ParamSpec(name, default, description, **kw)


PARAMETERS: tuple[ParamSpec, ...] = (
    _p("map_dir", "", "Map pyramid directory (jzi map build + jzi map embed)."),
    _p("model_file", "", "Model checkpoint (.safetensors) whose embeddings are in the map."),
    _p("retrieval_model", "", "Retrieval checkpoint (jzi train-retrieval): localize each frame "
       "by the nearest finest-level map view instead of the zoom (model_file is then unused; "
       "'backend' auto runs ONNX Runtime once exported by jzi export --retrieval-model, else "
       "torch on 'device'; refine.* refines around its top views; no seeded beam; its gate "
       "and covariance scale from jzi localize --retrieval-model R --calibrate; "
       "docs/retrieval.md). Empty: the zoom."),
    _p("backend", "auto", "Inference backend for the ground encoder.", choices=BACKENDS),
    _p("device", "auto", "Torch device: auto, cpu, cuda or cuda:N."),
    _p("export_dir", "", "Folder of the ONNX export (jzi export) where TensorRT engines are "
       "also cached, keyed by GPU, TensorRT version, precision and shapes; it plays the role of "
       "Isaac ROS' model_file_path + engine_file_path. Empty: the user cache "
       "($XDG_CACHE_HOME/jzi_ros/exports/<model hash>/)."),
    _p("force_engine_update", False, "Rebuild the TensorRT engine even if a cached one fits."),
    _p("enable_fp16", True, "FP16 on CUDA (TensorRT engine / torch); false: FP32 everywhere. "
       "CPU always runs FP32."),
    _p("max_workspace_size", 1 << 30, "TensorRT builder workspace limit in bytes.",
       min=1 << 20, max=1 << 40),
    _p("beam_width", 4, "Beam width of the zoom-in decoder (1 = the paper's greedy decoding).",
       min=1, max=64),
    _p("position", "top", "Fix position: 'top' = best cell's centre (paper), 'mean' = "
       "beam-weighted mean.", choices=POSITION_MODES),
    _p("confidence_threshold", -1.0, "Below this confidence a frame is NO_FIX: -1 = the gate "
       "calibrated into the model file (jzi localize --calibrate), 0 disables, 0..1 overrides.",
       min=-1.0, max=1.0),
    _p("publish_no_fix", True, "Publish NO_FIX fixes for low-confidence frames (false: publish "
       "nothing).", read_only=False),
    _p("sigma_floor_m", 5.0, "Smallest horizontal standard deviation (metres) of the fix; keeps "
       "the EKF's Mahalanobis gate from rejecting later fixes.", read_only=False,
       min=0.01, max=10000.0),
    _p("altitude_m", 0.0, "Altitude published in every fix (metres, WGS84 ellipsoid); "
       "navsat_transform drops NaN altitudes.", read_only=False, min=-1000.0, max=100000.0),
    _p("altitude_variance", 1.0e4, "Up variance in m^2 (large: the policy does not measure "
       "height).", read_only=False, min=1.0e-3, max=1.0e12),
    _p("covariance_type", "known", "NavSatFix position_covariance_type.", read_only=False,
       choices=COVARIANCE_TYPES),
    _p("max_rate_hz", 0.0, "Most frames localized per second (0: as fast as inference runs).",
       read_only=False, min=0.0, max=1000.0),
    _p("image_topic", "camera/image_raw", "Camera topic (with image_transport 'compressed' the "
       "node subscribes to IMAGE_TOPIC/compressed)."),
    _p("image_transport", "raw", "sensor_msgs/Image ('raw') or CompressedImage ('compressed').",
       choices=IMAGE_TRANSPORTS),
    _p("fix_topic", "jzi/fix", "sensor_msgs/NavSatFix output topic."),
    _p("fix_frame_id", "camera_link", "frame_id of the fix; a TF frame on the robot (navsat "
       "looks up base_link -> this frame)."),
    _p("reliability", "reliable", "QoS reliability of the fix publisher (reliable also matches "
       "best-effort subscribers).", choices=RELIABILITIES),
    _p("publish_pose", False, "Also publish geometry_msgs/PoseWithCovarianceStamped in the map "
       "frame (for setups without navsat_transform)."),
    _p("pose_topic", "jzi/pose", "PoseWithCovarianceStamped output topic."),
    _p("publish_hypotheses", True, "Publish the candidate cells as a PointCloud2 for RViz."),
    _p("hypotheses_topic", "jzi/hypotheses", "PointCloud2 output topic."),
    _p("map_frame_id", "jzi_map", "Frame of the pose and hypotheses: local ENU, origin at the "
       "map's root centre."),
    _p("cpu_graph", "jit", "How the torch backend runs on a CPU: 'jit' traces the encoder and "
       "beam search (a second at start-up), 'aoti' compiles them ahead of time (tens of seconds "
       "per graph at the first start on a machine, cached in export_dir/aoti or "
       "~/.cache/jzi_ros/aoti; then 1.6x faster frames, the same fixes; docs/localizer.md), "
       "'compile' torch.compile, "
       "'eager' neither.", choices=CPU_GRAPHS),
    _p("threads", DEFAULT_THREADS, "CPU threads of torch and OpenCV in the node's process (0: "
       "all cores; slower when other nodes share the cores, see docs/benchmarks.md).",
       min=0, max=1024),
)
PARAMETER_NAMES = tuple(spec.name for spec in PARAMETERS)
_SPECS = {spec.name: spec for spec in PARAMETERS}


@dataclass(frozen=True)
class NodeSettings:
    """Validated parameter values (one field per entry of PARAMETERS)."""

    map_dir: str
    model_file: str
    retrieval_model: str
    backend: str
    device: str
    export_dir: str
    force_engine_update: bool
    enable_fp16: bool
    max_workspace_size: int
    beam_width: int
    position: str
    confidence_threshold: float
    publish_no_fix: bool
    sigma_floor_m: float
    altitude_m: float
    altitude_variance: float
    covariance_type: str
    max_rate_hz: float
    image_topic: str
    image_transport: str
    fix_topic: str
    fix_frame_id: str
    reliability: str
    publish_pose: bool
    pose_topic: str
    publish_hypotheses: bool
    hypotheses_topic: str
    map_frame_id: str
    cpu_graph: str
    threads: int

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> "NodeSettings":
        """Validate ``values`` (missing names take their defaults); JziError names the bad one."""
        reject_unknown(values, PARAMETER_NAMES, NODE_NAME, "parameter")
        return cls(**{name: check_value(spec, values.get(name, spec.default))
                      for name, spec in _SPECS.items()})

    def replace(self, **changes: Any) -> "NodeSettings":
        return NodeSettings.from_values({**dataclasses.asdict(self), **changes})

    @property
    def subscribed_topic(self) -> str:
        """image_transport convention: the compressed stream is <base>/compressed."""
        if self.image_transport == "compressed":
            return self.image_topic.rstrip("/") + "/compressed"
        return self.image_topic


def check_value(spec: ParamSpec, value: Any) -> Any:
    """``value`` converted to the spec's type, or a JziError naming parameter, value and rule."""
    where = f"{NODE_NAME}: parameter '{spec.name}'"
    kind = type(spec.default)
    if kind is bool:
        if not isinstance(value, bool):
            raise JziError(f"{where} = {value!r}: expected true or false")
        return value
    if kind is str:
        if not isinstance(value, str):
            raise JziError(f"{where} = {value!r}: expected a string")
        if spec.choices and value not in spec.choices:
            raise JziError(f"{where} = {value!r}: expected one of {list(spec.choices)}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            kind is int and not float(value).is_integer()):
        expected = "an integer" if kind is int else "a number"
        raise JziError(f"{where} = {value!r}: expected {expected}")
    number = kind(value)
    if not math.isfinite(number):
        raise JziError(f"{where} = {value!r}: expected a finite number")
    if (spec.min is not None and number < spec.min) or (spec.max is not None
                                                        and number > spec.max):
        raise JziError(f"{where} = {value!r}: expected {spec.min} <= value <= {spec.max}")
    return number


def markdown_table() -> str:
    """Render the parameters table of docs/ros.md."""
    lines = ["| name | type | default | runtime | description |", "|---|---|---|---|---|"]
    for spec in PARAMETERS + REFINE_PARAMETERS:
        extra = f" One of: {', '.join(spec.choices)}." if spec.choices else ""
        if spec.min is not None:
            if isinstance(spec.default, int):
                extra += f" Range [{int(spec.min)}, {int(spec.max)}]."
            else:
                extra += f" Range [{spec.min:g}, {spec.max:g}]."
        default = repr(spec.default) if isinstance(spec.default, str) else str(spec.default)
        lines.append(f"| `{spec.name}` | {spec.type_name()} | `{default}` | "
                     f"{'no' if spec.read_only else 'yes'} | {spec.description}{extra} |")
    return "\n".join(lines)


# geometric refinement (docs/refinement.md): declared with the above, read once at start-up by
# jzi_ros/ros/refinement.py; the RefineConfig fields keep its defaults
_R = RefineConfig()
REFINE_PREFIX = "refine."
REFINE_PARAMETERS: tuple[ParamSpec, ...] = (
    _p("refine.enabled", False, "Register each frame against the map imagery around the "
       "zoom's cells (docs/refinement.md; the map needs imagery.tif from jzi map build). An "
       "accepted registration moves the fix and shrinks its covariance; the status stays FIX."),
    _p("refine.camera_info_topic", "", "sensor_msgs/CameraInfo of the camera (its K, scaled to "
       "the image size received). Empty: the image topic's sibling camera_info "
       "(camera/image_raw -> camera/camera_info)."),
    _p("refine.intrinsics", "", "Camera intrinsics 'FX,FY,CX,CY' in pixels of the published "
       "images; overrides CameraInfo. Empty: CameraInfo, else refine.hfov_deg."),
    _p("refine.hfov_deg", 0.0, "Horizontal field of view (square pixels, centred principal "
       "point) used while no CameraInfo has arrived; 0: such frames are not refined.",
       min=0.0, max=169.0),
    _p("refine.detector", _R.detector, "Local features (the map's features.npz holds SIFT).",
       choices=DETECTORS),
    _p("refine.nominal_height_m", _R.nominal_height_m, "Expected height above ground: sets the "
       "map resolution the frame is matched at and how far around a cell to search.",
       min=1.0, max=100000.0),
    _p("refine.top_cells", _R.top_cells, "Zoom cells tried, most probable first.", min=1,
       max=64),
    _p("refine.global_fallback", _R.global_fallback, "When no cell around the zoom's answer "
       "registers, register against the map's whole feature index (the classical search: "
       "tens to hundreds of ms more on such frames)."),
    _p("refine.track_frames", _R.track_frames, "Between SIFT registrations, register up to "
       "this many frames in a row by tracking the last registered frame's map matches "
       "(Lucas-Kanade: a few ms instead of tens; fixes a few metres less accurate, "
       "docs/refinement.md). 0: SIFT on every frame.", min=0, max=10000),
    _p("refine.track_async", _R.track_async, "With refine.track_frames: SIFT runs on a "
       "background thread and the first frame after it finishes tracks from its result; no "
       "frame waits for SIFT (until then frames track from the last keyframe or keep the "
       "zoom's fix; one more CPU core busy)."),
    _p("refine.min_inliers", _R.min_inliers, "Accept: at least this many homography inliers.",
       min=8, max=100000),
    _p("refine.min_inlier_ratio", _R.min_inlier_ratio, "Accept: inliers / ratio-test matches "
       "at least this.", min=0.0, max=1.0),
    _p("refine.max_skew", _R.max_skew, "Accept: how far the homography may be from a camera "
       "view with these intrinsics (a wrong focal length on an oblique view fails here).",
       min=1e-6, max=10.0),
    _p("refine.min_height_m", _R.min_height_m, "Accept: recovered height above ground range, "
       "lower end.", min=0.0, max=100000.0),
    _p("refine.max_height_m", _R.max_height_m, "Accept: recovered height above ground range, "
       "upper end.", min=1.0, max=100000.0),
    _p("refine.max_tilt_deg", _R.max_tilt_deg, "Accept: optical axis at most this far from "
       "nadir.", min=1.0, max=89.0),
    _p("refine.max_sigma_m", _R.max_sigma_m, "Accept: 1-sigma of the refined position at most "
       "this.", min=0.01, max=10000.0),
    _p("refine.georef_sigma_m", -1.0, "The map imagery's georeferencing 1-sigma (metres per "
       "axis) added to every refined fix's covariance, and once to every filtered fix's "
       "(fusion.enabled, refinement on or off). -1: the map manifest's georef_sigma_m "
       "(jzi map set; 0 when unknown).", min=-1.0, max=100000.0),
)


def refine_config(values: Mapping[str, Any]) -> RefineConfig:
    """Return the RefineConfig of validated ``refine.*`` values (JziError names a bad one)."""
    fields = {spec.name[len(REFINE_PREFIX):]: check_value(
        spec, values.get(spec.name, spec.default)) for spec in REFINE_PARAMETERS}
    config = {k: v for k, v in fields.items() if k in RefineConfig.__dataclass_fields__}
    config["hfov_deg"] = fields["hfov_deg"] or None
    if fields["georef_sigma_m"] == -1.0:  # any other value is RefineConfig's to check
        config["georef_sigma_m"] = None
    return RefineConfig(**config)


def camera_info_sibling(image_topic: str) -> str:
    """Return the CameraInfo topic next to an image topic (image_transport's convention)."""
    base = image_topic.rstrip("/")
    return base.rsplit("/", 1)[0] + "/camera_info" if "/" in base else "camera_info"
