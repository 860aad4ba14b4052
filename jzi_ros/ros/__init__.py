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
The ROS 2 layer: message conversions (ROS-free, also used with rosbags) and the rclpy node.

Only ``jzi_ros.ros.node`` imports rclpy; ``convert``, ``params`` and ``runtime`` import no ROS
module at load time so that tests and the bag tools run without a ROS 2 installation.
"""
