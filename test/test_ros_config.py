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
What the launch files start, and the shipped YAML configs, checked without ROS 2.

The launch files run here against small stand-ins for the ``launch`` / ``launch_ros`` API that
record the actions they return (launch is not on PyPI): which node with which parameters,
remappings and namespace; when demo.launch.py starts the bag. ``test_ros_launch.py`` runs
localize.launch.py for real under ``colcon test`` (marker ``launch``), ``test_ros_node.py``
feeds the params files to the real node.
"""
import importlib.util
import os
from pathlib import Path
import sys
import types
from types import SimpleNamespace

import pytest
import yaml

from jzi_ros.demo.bag import IMAGE_TOPIC
from jzi_ros.ros import params
from jzi_ros.ros.runtime import READY_MESSAGE

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "launch"
CONFIG = ROOT / "config"
SPECS = {spec.name: spec for spec in params.PARAMETERS}


class Action(SimpleNamespace):
    """A recorded launch action: its class name and keyword arguments."""

    def __init__(self, kind, *args, **kwargs):
        super().__init__(kind=kind, args=args, **kwargs)


def _recorder(kind):
    return lambda *args, **kwargs: Action(kind, *args, **kwargs)


class LaunchConfiguration:
    def __init__(self, name):
        self.name = name

    def perform(self, context):
        return context.launch_configurations[self.name]


def _module(name, **attrs):
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    return module


@pytest.fixture
def launch_api(monkeypatch):
    """Install the stand-ins; return a loader of launch/<name>.launch.py."""
    actions = {name: _recorder(name) for name in (
        "DeclareLaunchArgument", "OpaqueFunction", "IncludeLaunchDescription", "ExecuteProcess",
        "RegisterEventHandler", "LogInfo", "EmitEvent")}
    modules = {
        "launch": _module("launch", LaunchDescription=_recorder("LaunchDescription")),
        "launch.actions": _module("launch.actions", **actions),
        "launch.substitutions": _module("launch.substitutions",
                                        LaunchConfiguration=LaunchConfiguration),
        "launch.conditions": _module("launch.conditions", IfCondition=_recorder("IfCondition")),
        "launch.event_handlers": _module("launch.event_handlers",
                                         OnProcessIO=_recorder("OnProcessIO"),
                                         OnProcessExit=_recorder("OnProcessExit")),
        "launch.events": _module("launch.events", Shutdown=_recorder("Shutdown")),
        "launch.launch_description_sources": _module(
            "launch.launch_description_sources",
            PythonLaunchDescriptionSource=_recorder("PythonLaunchDescriptionSource")),
        "launch_ros": _module("launch_ros"),
        "launch_ros.actions": _module("launch_ros.actions", Node=_recorder("Node")),
        # the installed share directory has the source tree's launch/ and config/ layout
        "ament_index_python": _module("ament_index_python"),
        "ament_index_python.packages": _module(
            "ament_index_python.packages",
            get_package_share_directory=lambda package: str(ROOT)),
    }
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)

    def load(name):
        spec = importlib.util.spec_from_file_location(f"{name}_launch",
                                                      LAUNCH / f"{name}.launch.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.generate_launch_description()

    return load


def _arguments(description):
    return {a.args[0]: a.default_value for a in description.args[0]
            if a.kind == "DeclareLaunchArgument"}


def _run_opaque(description, **values):
    """Resolve the launch arguments (defaults + ``values``) and run the OpaqueFunction."""
    arguments = {**_arguments(description), **values}
    (opaque,) = [a for a in description.args[0] if a.kind == "OpaqueFunction"]
    context = SimpleNamespace(launch_configurations=arguments)
    return opaque.function(context)


def test_localize_launch_passes_the_params_file_as_ros_reads_it(launch_api):
    description = launch_api("localize")
    defaults = _arguments(description)
    assert defaults["params_file"] == str(CONFIG / "localize.yaml")
    assert {"map_dir", "model_file", "image_topic", "namespace", "use_sim_time"} <= set(defaults)
    (node,) = _run_opaque(description, map_dir="~/maps/site", image_topic="/cam/image",
                          namespace="robot1", use_sim_time="true")
    assert (node.kind, node.package, node.executable, node.name) == (
        "Node", "jzi_ros", "jzi_localizer", params.NODE_NAME)
    assert node.namespace == "robot1"
    # the user's file untouched (ROS reads it), then only the launch arguments that were given
    params_file, overrides = node.parameters
    assert params_file == str(CONFIG / "localize.yaml")
    assert overrides == {"map_dir": os.path.expanduser("~/maps/site"),
                         "image_topic": "/cam/image", "use_sim_time": True}
    (node,) = _run_opaque(description, params_file="")
    assert node.parameters == [{"use_sim_time": False}]


def test_demo_launch_plays_the_bag_only_once_the_node_is_ready(launch_api, tmp_path):
    for sub in ("bag", "map"):
        (tmp_path / sub).mkdir()
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"x")
    node, on_io, on_exit = _run_opaque(launch_api("demo"), demo_dir=str(tmp_path),
                                       model_file=str(model), rate="2.0")
    assert node.kind == "Node" and node.executable == "jzi_localizer"
    params_file, overrides = node.parameters
    assert params_file == str(CONFIG / "localize.yaml")
    assert overrides["map_dir"] == str(tmp_path / "map") and overrides["use_sim_time"] is True
    assert overrides["image_transport"] == "compressed"
    # image_transport convention: the bag's topic is <base>/compressed
    assert overrides["image_topic"] + "/compressed" == IMAGE_TOPIC
    handler = on_io.args[0]
    assert handler.kind == "OnProcessIO" and handler.target_action is node

    def output(text):
        return SimpleNamespace(text=text.encode())

    assert handler.on_stderr(output("[INFO] loading map ...")) is None
    started = handler.on_stderr(output(f"[INFO] [jzi_localizer]: {READY_MESSAGE} in 8.1 s"))
    play = [a for a in started if a.kind == "ExecuteProcess"]
    assert play and play[0].cmd == ["ros2", "bag", "play", str(tmp_path / "bag"), "--clock",
                                    "--rate", "2.0"]
    assert handler.on_stdout(output(READY_MESSAGE)) is None  # started once only
    exit_handler = on_exit.args[0]
    assert exit_handler.on_exit(SimpleNamespace(returncode=0), None) is None


def test_demo_launch_ends_when_the_node_dies_before_it_is_ready(launch_api, tmp_path):
    for sub in ("bag", "map"):
        (tmp_path / sub).mkdir()
    (tmp_path / "m.safetensors").write_bytes(b"x")
    _, _, on_exit = _run_opaque(launch_api("demo"), demo_dir=str(tmp_path),
                                model_file=str(tmp_path / "m.safetensors"))
    actions = on_exit.args[0].on_exit(SimpleNamespace(returncode=1), None)
    assert [a.kind for a in actions] == ["LogInfo", "EmitEvent"]
    assert actions[1].event.kind == "Shutdown"
    with pytest.raises(RuntimeError, match="run `jzi demo` first"):
        _run_opaque(launch_api("demo"), demo_dir=str(tmp_path / "missing"))


def test_fusion_launch_wires_navsat_to_the_fix_and_the_map_ekf(launch_api):
    description = launch_api("fusion")
    defaults = _arguments(description)
    nodes = {a.name: a for a in description.args[0] if a.kind == "Node"}
    fusion = yaml.safe_load((CONFIG / "fusion.yaml").read_text())
    assert set(nodes) == set(fusion)  # every node has its section in fusion.yaml
    for node in nodes.values():
        assert node.package == "robot_localization"
        assert node.parameters[0].name == "fusion_params_file"
    remaps = {src: dst if isinstance(dst, str) else defaults[dst.name]
              for src, dst in nodes["navsat_transform"].remappings}
    assert remaps["gps/fix"] == "/jzi/fix"
    assert remaps["odometry/filtered"] == "odometry/global"
    assert remaps["imu"] == defaults["imu_topic"]
    assert dict(nodes["ekf_filter_node_map"].remappings)["odometry/filtered"] == \
        "odometry/global"
    (include,) = [a for a in description.args[0] if a.kind == "IncludeLaunchDescription"]
    assert include.args[0].args[0] == str(LAUNCH / "localize.launch.py")


def test_what_the_launch_files_start_is_declared_in_package_xml(launch_api, tmp_path):
    from test_ros_package import package_xml_dependencies

    declared = package_xml_dependencies()
    for sub in ("bag", "map"):
        (tmp_path / sub).mkdir()
    (tmp_path / "m.safetensors").write_bytes(b"x")
    started = []
    for name, values in (("localize", {"map_dir": "/maps/site"}), ("fusion", {}),
                         ("demo", {"demo_dir": str(tmp_path),
                                   "model_file": str(tmp_path / "m.safetensors")})):
        description = launch_api(name)
        started += [a for a in description.args[0] if a.kind == "Node"]
        if any(a.kind == "OpaqueFunction" for a in description.args[0]):
            started += _run_opaque(description, **values)
    packages = {a.package for a in started if a.kind == "Node"}
    assert {"jzi_ros", "robot_localization"} <= packages
    assert packages - {"jzi_ros"} <= declared
    # demo.launch.py plays its bag with `ros2 bag play` (once the node is ready)
    (handler,) = [a.args[0] for a in started if a.kind == "RegisterEventHandler"
                  and a.args[0].kind == "OnProcessIO"]
    play = [a for a in handler.on_stderr(SimpleNamespace(text=READY_MESSAGE.encode()))
            if a.kind == "ExecuteProcess"]
    assert play[0].cmd[:3] == ["ros2", "bag", "play"] and "ros2bag" in declared
    assert {"launch", "launch_ros"} <= declared


# --------------------------------------------------------------------------- YAML configs

def test_localize_yaml_sets_exactly_the_declared_parameters_with_their_types():
    document = yaml.safe_load((CONFIG / "localize.yaml").read_text())
    # /**/jzi_localizer: the node under any namespace (a plain key would miss /robot1/...)
    assert list(document) == ["/**/" + params.NODE_NAME]
    values = document["/**/" + params.NODE_NAME]["ros__parameters"]
    assert set(values) == set(params.PARAMETER_NAMES)
    for name, value in values.items():
        # ROS 2 refuses 0 for a double parameter: the YAML type must equal the declared type
        assert type(value) is type(SPECS[name].default), (name, value)
        assert value == SPECS[name].default, f"{name}: YAML and params.py defaults differ"


@pytest.fixture(scope="module")
def fusion():
    return yaml.safe_load((CONFIG / "fusion.yaml").read_text())


def test_fusion_yaml_has_the_dual_ekf_and_navsat(fusion):
    for node in ("ekf_filter_node_odom", "ekf_filter_node_map", "navsat_transform"):
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


def test_navsat_heading_source(fusion):
    navsat = fusion["navsat_transform"]["ros__parameters"]
    assert "use_local_cartesian" not in navsat  # broken for fixes
    assert isinstance(navsat["use_odometry_yaw"], bool)
    assert isinstance(navsat["zero_altitude"], bool)


def test_refine_parameters_map_onto_refine_config_and_the_docs_table():
    from jzi_ros.errors import JziError
    from jzi_ros.inference.refine import RefineConfig

    assert params.refine_config({}) == RefineConfig()  # hfov_deg 0: none
    config = params.refine_config({"refine.hfov_deg": 60.0, "refine.min_inliers": 40,
                                   "refine.nominal_height_m": 120.0})
    assert (config.hfov_deg, config.min_inliers, config.nominal_height_m) == (60.0, 40, 120.0)
    with pytest.raises(JziError, match="'refine.min_inliers' = 3: expected 8"):
        params.refine_config({"refine.min_inliers": 3})
    with pytest.raises(JziError, match="refine.min_height_m"):  # RefineConfig's own check
        params.refine_config({"refine.min_height_m": 500.0, "refine.max_height_m": 400.0})
    assert params.camera_info_sibling("camera/image_raw") == "camera/camera_info"
    assert params.camera_info_sibling("/robot/cam/image/") == "/robot/cam/camera_info"
    assert params.camera_info_sibling("image") == "camera_info"
    assert "| `refine.enabled` | bool | `False` |" in params.markdown_table()
    assert not set(params.PARAMETER_NAMES) & {s.name for s in params.REFINE_PARAMETERS}
