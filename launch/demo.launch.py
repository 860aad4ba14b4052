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
The demo on a real ROS 2 graph: play the demo bag and localize its camera frames.

jzi demo            # once: builds ~/.cache/jzi_ros/demo/{map,bag} (or $JZI_DEMO_DIR)
ros2 launch jzi_ros demo.launch.py [demo_dir:=DIR] [rate:=1.0]
ros2 topic echo /jzi/fix            # compare with /ground_truth/fix from the bag

The bag starts when the node reports ready (its "localizer ready" log line, once the map, the
model and the subscription are up: several seconds), so no frame is played to nobody. If the
node exits before that, the launch ends with it.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import (DeclareLaunchArgument, EmitEvent, ExecuteProcess, LogInfo,
                            OpaqueFunction, RegisterEventHandler)
from launch.event_handlers import OnProcessExit, OnProcessIO
from launch.events import Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from jzi_ros.demo.bag import CAMERA_FRAME, IMAGE_TOPIC
from jzi_ros.demo.flow import default_workdir, shipped_model
from jzi_ros.ros.params import NODE_NAME
from jzi_ros.ros.runtime import READY_MESSAGE

COMPRESSED_SUFFIX = "/compressed"


def _start(context):
    def arg(name):
        return LaunchConfiguration(name).perform(context)

    demo_dir = os.path.expanduser(arg("demo_dir")) or str(default_workdir())
    bag, map_dir = os.path.join(demo_dir, "bag"), os.path.join(demo_dir, "map")
    model = arg("model_file") or str(shipped_model())
    for what, path in (("demo bag", bag), ("demo map", map_dir), ("demo model", model)):
        if not os.path.exists(path):
            raise RuntimeError(f"{what} not found at {path}: run `jzi demo` first "
                               "(or pass demo_dir:=DIR / model_file:=FILE)")
    # the bag holds CompressedImage on <base>/compressed (image_transport convention)
    base = IMAGE_TOPIC[:-len(COMPRESSED_SUFFIX)]
    overrides = {"map_dir": map_dir, "model_file": model, "image_topic": base,
                 "image_transport": "compressed", "fix_frame_id": CAMERA_FRAME,
                 "use_sim_time": True}  # the bag publishes /clock
    parameters = ([arg("params_file")] if arg("params_file") else []) + [overrides]
    node = Node(package="jzi_ros", executable="jzi_localizer", name=NODE_NAME,
                parameters=parameters, output="screen", emulate_tty=True)
    play = ExecuteProcess(cmd=["ros2", "bag", "play", bag, "--clock", "--rate", arg("rate")],
                          output="screen")
    started = []

    def on_output(event):
        # ROS logs go to stderr by default, to stdout with RCUTILS_LOGGING_USE_STDOUT=1
        if not started and READY_MESSAGE in event.text.decode(errors="replace"):
            started.append(True)
            return [LogInfo(msg="jzi_localizer is ready: playing the demo bag"), play]
        return None

    def on_exit(event, _context):
        if not started:
            return [LogInfo(msg=f"jzi_localizer exited (code {event.returncode}) before it "
                                "was ready; not playing the bag"),
                    EmitEvent(event=Shutdown(reason="jzi_localizer exited"))]
        return None

    return [
        node,
        RegisterEventHandler(OnProcessIO(target_action=node, on_stdout=on_output,
                                         on_stderr=on_output)),
        RegisterEventHandler(OnProcessExit(target_action=node, on_exit=on_exit)),
    ]


def generate_launch_description():
    share = get_package_share_directory("jzi_ros")
    return LaunchDescription([
        DeclareLaunchArgument("demo_dir", default_value="",
                              description="Directory written by `jzi demo` (map/ and bag/); "
                                          "empty: $JZI_DEMO_DIR or ~/.cache/jzi_ros/demo"),
        DeclareLaunchArgument("model_file", default_value="",
                              description="Checkpoint; empty: the demo model shipped with "
                                          "jzi_ros (jzi_ros/data/demo_model.safetensors)"),
        DeclareLaunchArgument("params_file",
                              default_value=os.path.join(share, "config", "localize.yaml"),
                              description="jzi_localizer parameters"),
        DeclareLaunchArgument("rate", default_value="1.0", description="Bag playback rate"),
        OpaqueFunction(function=_start),
    ])
