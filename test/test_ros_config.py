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

"""Launch files and YAML configs parse and agree with the node's declared parameters (no ROS)."""
import ast
from pathlib import Path

import pytest
import yaml

from jzi_ros.errors import JziError
from jzi_ros.ros import params

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "launch"
CONFIG = ROOT / "config"
SPECS = {spec.name: spec for spec in params.PARAMETERS}


@pytest.mark.parametrize("name", ["localize", "fusion", "demo"])
def test_launch_files_parse_and_define_generate_launch_description(name):
    tree = ast.parse((LAUNCH / f"{name}.launch.py").read_text())
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert "generate_launch_description" in functions


def _strings(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)
            and isinstance(n.value, str)}


def test_localize_launch_declares_the_documented_arguments():
    strings = _strings(LAUNCH / "localize.launch.py")
    assert {"params_file", "image_topic", "namespace", "use_sim_time", "map_dir",
            "model_file", "jzi_localizer"} <= strings


def test_localize_yaml_sets_exactly_the_declared_parameters_with_their_types():
    document = yaml.safe_load((CONFIG / "localize.yaml").read_text())
    assert list(document) == [params.NODE_NAME]
    values = document[params.NODE_NAME]["ros__parameters"]
    assert set(values) == set(params.PARAMETER_NAMES)
    for name, value in values.items():
        # ROS 2 refuses 0 for a double parameter: the YAML type must equal the declared type
        assert type(value) is type(SPECS[name].default), (name, value)
        assert value == SPECS[name].default, f"{name}: YAML and params.py defaults differ"


def test_launch_parameters_merge_overrides_and_validate(tmp_path):
    got = params.launch_parameters(CONFIG / "localize.yaml",
                                   {"map_dir": "~/maps/site", "model_file": "",
                                    "image_topic": "/cam/image"})
    assert got["map_dir"] == str(Path("~/maps/site").expanduser())
    assert got["model_file"] == "" and got["image_topic"] == "/cam/image"

    bad = tmp_path / "bad.yaml"
    bad.write_text("jzi_localizer:\n  ros__parameters:\n    beam_width: 0\n")
    with pytest.raises(JziError, match=r"bad.yaml: .*'beam_width'"):
        params.launch_parameters(bad, {})
    typo = tmp_path / "typo.yaml"
    typo.write_text("/**:\n  ros__parameters:\n    beam_wdith: 3\n")
    with pytest.raises(JziError, match="unknown parameter"):
        params.launch_parameters(typo, {})


def test_params_file_root_keys(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("/**:\n  ros__parameters:\n    beam_width: 2\n    use_sim_time: true\n"
                    "/jzi_localizer:\n  ros__parameters:\n    altitude_m: 7\n")
    got = params.launch_parameters(path, {})
    assert got == {"beam_width": 2, "altitude_m": 7.0}
    assert isinstance(got["altitude_m"], float)
    path.write_text("other_node:\n  ros__parameters:\n    x: 1\n")
    with pytest.raises(JziError, match="no 'jzi_localizer'"):
        params.load_params_file(path)
    with pytest.raises(JziError, match="cannot read"):
        params.load_params_file(tmp_path / "missing.yaml")


# --------------------------------------------------------------------------- fusion example

@pytest.fixture(scope="module")
def fusion():
    return yaml.safe_load((CONFIG / "fusion.yaml").read_text())


def test_fusion_yaml_has_the_dual_ekf_and_navsat(fusion):
    strings = _strings(LAUNCH / "fusion.launch.py")
    for node in ("ekf_filter_node_odom", "ekf_filter_node_map", "navsat_transform"):
        assert node in fusion and node in strings, node
        assert isinstance(fusion[node]["ros__parameters"], dict)
    assert fusion["ekf_filter_node_odom"]["ros__parameters"]["world_frame"] == "odom"
    assert fusion["ekf_filter_node_map"]["ros__parameters"]["world_frame"] == "map"


def test_map_ekf_fuses_the_fix_x_y_only_with_lag_handling(fusion):
    ekf = fusion["ekf_filter_node_map"]["ros__parameters"]
    assert ekf["odom1"] == "odometry/gps"
    config = ekf["odom1_config"]
    assert len(config) == 15 and config[:2] == [True, True] and not any(config[2:])
    assert ekf["smooth_lagged_data"] is True
    assert 1.0 <= ekf["history_length"] <= 30.0
    assert ekf["odom1_pose_rejection_threshold"] > 0
    for node in ("ekf_filter_node_odom", "ekf_filter_node_map"):
        for key, value in fusion[node]["ros__parameters"].items():
            if key.endswith("_config"):
                assert len(value) == 15 and all(isinstance(v, bool) for v in value), key


def test_navsat_heading_source_and_remapping(fusion):
    navsat = fusion["navsat_transform"]["ros__parameters"]
    assert "use_local_cartesian" not in navsat  # broken for fixes (docs/ros.md)
    assert isinstance(navsat["use_odometry_yaw"], bool)
    assert isinstance(navsat["zero_altitude"], bool)
    source = (LAUNCH / "fusion.launch.py").read_text()
    assert '("gps/fix", LaunchConfiguration("fix_topic"))' in source
    assert '("imu", LaunchConfiguration("imu_topic"))' in source
    assert '("odometry/filtered", "odometry/global")' in source
    assert "/jzi/fix" in _strings(LAUNCH / "fusion.launch.py")


def test_setup_installs_launch_and_config():
    setup = (ROOT / "setup.py").read_text()
    assert 'glob("launch/*.launch.py")' in setup and 'glob("config/*.yaml")' in setup
    assert "jzi_localizer = jzi_ros.ros.node:main" in setup


def test_demo_launch_matches_the_demo_bag():
    bag = pytest.importorskip("jzi_ros.demo.bag")
    # demo.launch.py subscribes <base>/compressed: the bag's topic must follow the convention
    assert bag.IMAGE_TOPIC.endswith("/compressed")
    assert bag.IMAGE_TYPE == "sensor_msgs/msg/CompressedImage"
    strings = _strings(LAUNCH / "demo.launch.py")
    assert {"demo_dir", "model_file", "params_file", "rate", "--clock"} <= strings
