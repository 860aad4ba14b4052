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

"""The package is a real ament_python package, and its core never imports ROS."""
import ast
from pathlib import Path
import subprocess
import sys

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ("geo", "errors", "files", "maps", "model", "training", "inference", "evaluation",
        "demo", "cli")
ROS_MODULES = {"rclpy", "cv_bridge", "sensor_msgs_py", "launch", "launch_ros",
               "diagnostic_updater"}


def test_package_xml_parses_and_declares_dependencies():
    package_module = pytest.importorskip("catkin_pkg.package")
    package = package_module.parse_package(str(ROOT / "package.xml"))
    assert package.name == "jzi_ros"
    assert package.package_format == 3
    assert package.get_build_type() == "ament_python"
    exec_deps = {d.name for d in package.exec_depends}
    assert {"rclpy", "sensor_msgs", "cv_bridge"} <= exec_deps
    test_deps = {d.name for d in package.test_depends}
    assert {"ament_copyright", "ament_flake8", "ament_pep257", "python3-pytest"} <= test_deps


def test_ament_layout():
    assert (ROOT / "resource" / "jzi_ros").is_file()
    setup_cfg = (ROOT / "setup.cfg").read_text()
    assert "script_dir=$base/lib/jzi_ros" in setup_cfg
    assert "install_scripts=$base/lib/jzi_ros" in setup_cfg


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_core_modules_import_no_ros():
    offenders = []
    for name in CORE:
        target = ROOT / "jzi_ros" / name
        files = list(target.rglob("*.py")) if target.is_dir() else [target.with_suffix(".py")]
        for path in files:
            if path.exists() and _imported_modules(path) & ROS_MODULES:
                offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, f"core modules importing ROS: {offenders}"


@pytest.mark.slow  # a fresh interpreter imports every module
def test_core_imports_without_ros_installed():
    # A fresh interpreter in which importing any ROS module fails.
    code = (
        "import sys, importlib, pkgutil\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {sorted(ROS_MODULES)!r}:\n"
        "            raise ImportError('ROS blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import jzi_ros\n"
        f"for name in {CORE!r}:\n"
        "    try:\n"
        "        mod = importlib.import_module('jzi_ros.' + name)\n"
        "    except ModuleNotFoundError as err:\n"
        "        if err.name == 'jzi_ros.' + name: continue\n"
        "        raise\n"
        "    for info in pkgutil.walk_packages(getattr(mod, '__path__', []), "
        "mod.__name__ + '.'):\n"
        "        importlib.import_module(info.name)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_cli_help_lists_subcommands():
    result = subprocess.run([sys.executable, "-m", "jzi_ros.cli.main", "--help"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "usage: jzi" in result.stdout
