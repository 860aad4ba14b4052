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
Optional dependencies: one place that says which extra a missing module belongs to.

A plain ``pip install jzi_ros`` has only the core (localize, train on an existing map). The
commands that need more (building maps, reading bags, plots, ONNX) check up front with
:func:`require_extra`, and the CLI turns a late ``ModuleNotFoundError`` of these modules into
the same one line with :func:`missing_extra_message`, instead of a traceback.
"""
from __future__ import annotations

import importlib.util

from jzi_ros.errors import JziError

# extra -> the import names it provides (setup.py's EXTRAS lists the distributions)
EXTRA_MODULES = {
    "maps": ("rasterio",),
    "replay": ("rosbags", "matplotlib"),
    "export": ("onnx", "onnxscript", "onnxruntime"),
    "tensorrt": ("tensorrt",),
}
MODULE_EXTRA = {module: extra for extra, modules in EXTRA_MODULES.items() for module in modules}
ROS_MODULES = ("rclpy", "cv_bridge", "diagnostic_msgs", "sensor_msgs", "std_msgs",
               "geometry_msgs", "builtin_interfaces", "rcl_interfaces")


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def extra_hint(extra: str) -> str:
    return f"pip install 'jzi_ros[{extra}]' (or jzi_ros[all])"


def require_extra(what: str, *extras: str, modules: tuple[str, ...] | None = None) -> None:
    """
    Raise one JziError when a module of ``extras`` (or only ``modules`` of them) is missing.

    ``what`` names the feature, e.g. "jzi map build".
    """
    for extra in extras:
        for module in EXTRA_MODULES[extra]:
            if (modules is None or module in modules) and not _installed(module):
                raise JziError(f"{what} needs the optional dependency {module!r} (extra "
                               f"'{extra}'), which is not installed: {extra_hint(extra)}")


def missing_extra_message(err: ModuleNotFoundError) -> str | None:
    """Return the one-line message for a missing optional module, or None for anything else."""
    top = (err.name or "").split(".")[0]
    if top in MODULE_EXTRA:
        extra = MODULE_EXTRA[top]
        return (f"the optional dependency {top!r} (extra '{extra}') is not installed: "
                f"{extra_hint(extra)}")
    if top in ROS_MODULES:
        return (f"the ROS 2 module {top!r} is not importable: source your ROS 2 setup "
                "(e.g. /opt/ros/jazzy/setup.bash) and build the package with colcon, or "
                "install ROS 2 Jazzy's rclpy from PyPI (pip install 'jzi_ros[ros-pip]', "
                "CPython 3.11); without ROS 2 use `jzi replay` / `jzi localize`")
    return None
