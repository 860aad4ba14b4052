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
Start jzi_localizer: camera image in, /jzi/fix (sensor_msgs/NavSatFix) out.

ros2 launch jzi_ros localize.launch.py map_dir:=~/maps/site model_file:=~/models/site.safetensors
    [params_file:=my.yaml] [image_topic:=/camera/image_raw] [namespace:=robot1]
    [use_sim_time:=true]

The params file goes to the node as ROS reads it (``parameters=[params_file, overrides]``):
every key ROS accepts works (``jzi_localizer:``, ``/robot1/jzi_localizer:``, ``/**:``,
``qos_overrides./jzi/fix.publisher.depth``). Non-empty launch arguments override it. The node
checks every value when it declares its parameters: a bad one is one error line and exit 1.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from jzi_ros.ros.params import NODE_NAME

OVERRIDES = ("map_dir", "model_file", "retrieval_model", "image_topic", "image_transport")


def _start_node(context):
    def arg(name):
        return LaunchConfiguration(name).perform(context)

    overrides = {name: arg(name) for name in OVERRIDES if arg(name)}
    for name in ("map_dir", "model_file", "retrieval_model"):
        if name in overrides:
            overrides[name] = os.path.expanduser(overrides[name])
    overrides["use_sim_time"] = arg("use_sim_time").lower() in ("true", "1", "yes")
    parameters = ([arg("params_file")] if arg("params_file") else []) + [overrides]
    return [Node(package="jzi_ros", executable="jzi_localizer", name=NODE_NAME,
                 namespace=arg("namespace"), parameters=parameters, output="screen",
                 emulate_tty=True)]


def generate_launch_description():
    default_params = os.path.join(get_package_share_directory("jzi_ros"), "config",
                                  "localize.yaml")
    return LaunchDescription([
        DeclareLaunchArgument("params_file", default_value=default_params,
                              description="ROS 2 params YAML for jzi_localizer (any key ROS "
                                          "accepts: jzi_localizer, /ns/jzi_localizer, /**)"),
        DeclareLaunchArgument("map_dir", default_value="",
                              description="Map directory (overrides the params file)"),
        DeclareLaunchArgument("model_file", default_value="",
                              description="Checkpoint .safetensors (overrides the params file)"),
        DeclareLaunchArgument("retrieval_model", default_value="",
                              description="Retrieval checkpoint: localize by the nearest map "
                                          "view instead of the zoom (overrides the params "
                                          "file)"),
        DeclareLaunchArgument("image_topic", default_value="",
                              description="Camera topic (overrides the params file)"),
        DeclareLaunchArgument("image_transport", default_value="",
                              description="raw or compressed (overrides the params file)"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="Namespace of the node and its relative topics"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="Use /clock (bag playback, simulation)"),
        OpaqueFunction(function=_start_node),
    ])
