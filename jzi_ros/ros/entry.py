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
Console script ``jzi_localizer``: the node, or one line when ROS 2 is not importable.

``jzi_ros.ros.node`` imports rclpy and the message packages at module level; importing it from
here turns a missing one into one line naming what to install instead of a traceback.
"""
from __future__ import annotations

import importlib
import sys

from jzi_ros.extras import missing_extra_message


def main(args: list[str] | None = None) -> int:
    """Run the node (0 clean stop, 1 configuration error or ROS 2 not importable)."""
    try:
        node = importlib.import_module("jzi_ros.ros.node")
    except ModuleNotFoundError as err:
        message = missing_extra_message(err)
        if message is None:
            raise
        print(f"jzi_localizer: error: {message}", file=sys.stderr)
        return 1
    return node.main(args)
