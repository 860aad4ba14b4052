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
Example fusion: jzi_localizer + robot_localization dual EKF + navsat_transform_node.

ros2 launch jzi_ros fusion.launch.py map_dir:=... model_file:=... image_topic:=...
    [imu_topic:=imu/data] [use_odometry_yaw:=false] [fusion_params_file:=my_fusion.yaml]
    [start_localizer:=true] [use_sim_time:=false]

The robot provides: wheel odometry on "odom", an IMU with earth-referenced yaw on imu_topic
(or use_odometry_yaw:=true), and TF base_link -> the fix frame (fix_frame_id, default
camera_link). Never play a looping bag into navsat_transform (a time jump breaks it).
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    share = get_package_share_directory("jzi_ros")
    fusion_params = LaunchConfiguration("fusion_params_file")
    # launch_ros YAML-parses substituted values: "true"/"false" become booleans
    common = {"use_sim_time": LaunchConfiguration("use_sim_time")}

    localizer = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(share, "launch", "localize.launch.py")),
        launch_arguments={name: LaunchConfiguration(name) for name in (
            "params_file", "map_dir", "model_file", "image_topic", "use_sim_time")}.items(),
        condition=IfCondition(LaunchConfiguration("start_localizer")))

    ekf_odom = Node(package="robot_localization", executable="ekf_node",
                    name="ekf_filter_node_odom", output="screen",
                    parameters=[fusion_params, common],
                    remappings=[("odometry/filtered", "odometry/local")])
    ekf_map = Node(package="robot_localization", executable="ekf_node",
                   name="ekf_filter_node_map", output="screen",
                   parameters=[fusion_params, common],
                   remappings=[("odometry/filtered", "odometry/global")])
    navsat = Node(package="robot_localization", executable="navsat_transform_node",
                  name="navsat_transform", output="screen",
                  parameters=[fusion_params, common,
                              {"use_odometry_yaw": LaunchConfiguration("use_odometry_yaw")}],
                  remappings=[("imu", LaunchConfiguration("imu_topic")),
                              ("gps/fix", LaunchConfiguration("fix_topic")),
                              ("gps/filtered", "gps/filtered"),
                              ("odometry/gps", "odometry/gps"),
                              ("odometry/filtered", "odometry/global")])

    return LaunchDescription([
        DeclareLaunchArgument("fusion_params_file",
                              default_value=os.path.join(share, "config", "fusion.yaml"),
                              description="robot_localization parameters (dual EKF + navsat)"),
        DeclareLaunchArgument("params_file",
                              default_value=os.path.join(share, "config", "localize.yaml"),
                              description="jzi_localizer parameters"),
        DeclareLaunchArgument("map_dir", default_value="", description="Map directory"),
        DeclareLaunchArgument("model_file", default_value="", description="Checkpoint"),
        DeclareLaunchArgument("image_topic", default_value="", description="Camera topic"),
        DeclareLaunchArgument("fix_topic", default_value="/jzi/fix",
                              description="NavSatFix topic fed to navsat_transform (gps/fix)"),
        DeclareLaunchArgument("imu_topic", default_value="imu/data",
                              description="IMU with earth-referenced yaw for navsat heading"),
        DeclareLaunchArgument("use_odometry_yaw", default_value="false",
                              description="Heading from odometry/global instead of the IMU"),
        DeclareLaunchArgument("start_localizer", default_value="true",
                              description="Also start jzi_localizer (localize.launch.py)"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="Use /clock"),
        localizer, ekf_odom, ekf_map, navsat,
    ])
