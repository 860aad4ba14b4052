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
``colcon test`` finds what the tests import: package.xml for rosdep, docs/ros-install.md for pip.

On a ROS machine ``rosdep install`` installs package.xml's dependencies and nothing else; a test
import that is in neither list stops ``colcon test`` at collection (it happened with
hypothesis).
"""
import ast
from pathlib import Path
import re
import sys
import xml.etree.ElementTree as ET

ROOT = Path(__file__).resolve().parents[1]
LOCAL = {"jzi_ros", "support", "replay_support", "test"}
# import name -> rosdep key (python3-* keys or ROS package names)
ROSDEP_KEYS = {
    "pytest": "python3-pytest", "hypothesis": "python3-hypothesis", "numpy": "python3-numpy",
    "cv2": "python3-opencv", "yaml": "python3-yaml", "pyproj": "python3-pyproj",
    "catkin_pkg": "python3-catkin-pkg",
}
# import name -> pip distribution (no rosdep key: documented in docs/ros-install.md)
PIP_ONLY = {"torch": "torch", "safetensors": "safetensors", "rosbags": "rosbags",
            "rasterio": "rasterio", "affine": "rasterio", "pydocstyle": "pydocstyle",
            "matplotlib": "matplotlib"}
# optional in the tests (pytest.importorskip / skip markers): need not be installed
OPTIONAL = {"onnx", "onnxruntime", "onnxscript", "tensorrt", "ament_copyright", "ament_flake8",
            "ament_pep257", "cv_bridge", "flake8", "numba"}


def _test_imports() -> set[str]:
    names = set()
    for path in (ROOT / "test").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    local = LOCAL | {path.stem for path in (ROOT / "test").glob("*.py")}
    return names - set(sys.stdlib_module_names) - local - OPTIONAL


def package_xml_dependencies() -> set[str]:
    """Return every depend / exec_depend / test_depend key of package.xml."""
    root = ET.parse(ROOT / "package.xml").getroot()
    return {element.text.strip() for tag in ("depend", "exec_depend", "test_depend")
            for element in root.iter(tag)}


def _documented_pip_packages() -> set[str]:
    doc = (ROOT / "docs" / "ros-install.md").read_text()
    words = set()
    for line in doc.splitlines():
        if "pip install" in line:
            words.update(re.findall(r"[A-Za-z][\w.-]*", line.split("pip install", 1)[1]))
    return words


def test_every_test_import_is_a_declared_or_documented_dependency():
    declared = package_xml_dependencies()
    documented = _documented_pip_packages()
    missing = []
    for name in sorted(_test_imports()):
        if name in PIP_ONLY:
            if PIP_ONLY[name] not in documented:
                missing.append(f"{name}: pip package {PIP_ONLY[name]} not in "
                               "docs/ros-install.md")
        elif ROSDEP_KEYS.get(name, name) not in declared:
            missing.append(f"{name}: no <test_depend>/<exec_depend>{ROSDEP_KEYS.get(name, name)}"
                           " in package.xml")
    assert not missing, missing
