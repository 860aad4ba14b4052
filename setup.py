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

"""ament_python package that also installs with plain pip (no ROS 2 needed for the core)."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "jzi_ros"

EXTRAS = {
    # building maps from GeoTIFF / COG / MBTiles / XYZ rasters
    "maps": ["rasterio>=1.3"],
    # rosbag replay without ROS 2, reports and plots
    "replay": ["rosbags>=0.10", "matplotlib>=3.6"],
    # ONNX export and the ONNX Runtime backend
    "export": ["onnx>=1.15", "onnxscript>=0.1", "onnxruntime>=1.17"],
    # the temporal filter's compiled per-frame step (FusionConfig.kernel; numpy without it)
    "fast": ["numba>=0.60"],
    # TensorRT backend (GPU machines only; usually installed with JetPack / NVIDIA's index)
    "tensorrt": ["tensorrt>=10"],
    # ROS 2 Jazzy's rclpy and the message packages the node uses, as PyPI wheels (no ROS
    # install needed; launch, cv_bridge, diagnostic_updater are not on PyPI): docs/ros-install.md
    "ros-pip": ["ros-jazzy-rclpy[fastrtps]", "ros-jazzy-sensor-msgs", "ros-jazzy-geometry-msgs",
                "ros-jazzy-diagnostic-msgs", "ros-jazzy-nav-msgs"],
}
EXTRAS["train"] = EXTRAS["maps"] + ["matplotlib>=3.6"]
EXTRAS["all"] = sorted({dep for name, deps in EXTRAS.items()
                        if name not in ("tensorrt", "ros-pip") for dep in deps})
# flake8 with the plugins ament_flake8 uses, and pydocstyle (ament_pep257): test/test_style.py
LINT = ["flake8>=6", "flake8-builtins", "flake8-comprehensions", "flake8-docstrings",
        "flake8-import-order", "flake8-quotes", "pydocstyle>=6"]
EXTRAS["test"] = EXTRAS["all"] + ["pytest>=7", "hypothesis>=6", "catkin_pkg>=0.5"] + LINT

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    package_data={PACKAGE: ["data/*", "training/configs/*.yaml"]},
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + PACKAGE]),
        ("share/" + PACKAGE, ["package.xml"]),
        ("share/" + PACKAGE + "/launch", glob("launch/*.launch.py")),
        ("share/" + PACKAGE + "/config", glob("config/*.yaml")),
    ],
    python_requires=">=3.10",
    install_requires=[
        "setuptools",
        "numpy>=1.23",
        "pyproj>=3.4",
        "opencv-python-headless>=4.6",
        "torch>=2.2",
        "transformers>=4.40",
        "safetensors>=0.4",
        "pyyaml>=6",
        # image messages -> RGB without cv_bridge (replay, and the node on pip-installed ROS 2)
        "rosbags-image>=0.9",
        "tqdm>=4.60",
    ],
    extras_require=EXTRAS,
    zip_safe=True,
    maintainer="jzi_ros maintainers",
    maintainer_email="maintainers@jzi-ros.dev",
    description="Just Zoom In cross-view geo-localization for ROS 2: camera -> NavSatFix",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            "jzi = jzi_ros.cli.main:main",
            "jzi_localizer = jzi_ros.ros.entry:main",
            "jzi_replay = jzi_ros.cli.replay:main",
        ],
    },
)
