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
A bag played into jzi_localizer on a real ROS 2 graph gives the fixes offline replay gives.

Where ``ros2 bag play`` is missing (ROS 2 from pip), this plays the camera topic of a bag
(read with rosbags) with rclpy, frame by frame: each frame is published once the previous one's
fix arrived, so none is dropped. The node runs as its own process with its default parameters;
the same frames go through the same Localizer offline (``localizer_config`` of the node). It
prints how many fixes came back, whether their stamps are the image stamps, and the largest
distance between the graph's fix and the offline fix of each frame.

    jzi demo --workdir ~/jzi-demo
    .venv/bin/python benchmarks/ros_play_bag.py ~/jzi-demo/bag --map-dir ~/jzi-demo/map
"""
from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
import signal
import subprocess
import sys
import time

from jzi_ros.demo.bag import IMAGE_TOPIC
from jzi_ros.demo.flow import shipped_model
from jzi_ros.evaluation.bags import open_bag
from jzi_ros.inference.messages import compressed_msg_to_rgb, image_msg_to_rgb, stamp_to_ns
from jzi_ros.ros.params import NodeSettings

COMPRESSED = "sensor_msgs/msg/CompressedImage"
EARTH_RADIUS_M = 6_371_000.0


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Return the small-angle distance in metres between two WGS84 positions."""
    north = math.radians(lat2 - lat1) * EARTH_RADIUS_M
    east = math.radians(lon2 - lon1) * EARTH_RADIUS_M * math.cos(math.radians(lat1))
    return math.hypot(east, north)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("bag", type=Path)
    parser.add_argument("--map-dir", type=Path, required=True)
    parser.add_argument("--model-file", type=Path, default=None)
    parser.add_argument("--image-topic", default=IMAGE_TOPIC)
    parser.add_argument("--timeout-s", type=float, default=60.0)
    args = parser.parse_args()
    model = args.model_file or shipped_model()
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(150 + os.getpid() % 50))

    with open_bag(args.bag) as reader:
        connections = [c for c in reader.connections if c.topic == args.image_topic]
        if not connections:
            raise SystemExit(f"{args.bag}: no topic {args.image_topic}")
        msgtype = connections[0].msgtype
        frames = [reader.deserialize(raw, c.msgtype)
                  for c, _, raw in reader.messages(connections=connections)]
    compressed = msgtype == COMPRESSED
    base = args.image_topic[:-len("/compressed")] if compressed else args.image_topic
    print(f"{len(frames)} frames of {msgtype} on {args.image_topic}")

    settings = NodeSettings.from_values({"map_dir": str(args.map_dir), "model_file": str(model),
                                         "backend": "torch", "device": "cpu"})
    node = subprocess.Popen(
        [sys.executable, "-m", "jzi_ros.ros.node", "--ros-args",
         "-p", f"map_dir:={settings.map_dir}", "-p", f"model_file:={settings.model_file}",
         "-p", "backend:=torch", "-p", "device:=cpu", "-p", f"image_topic:={base}",
         "-p", f"image_transport:={'compressed' if compressed else 'raw'}"],
        env=dict(os.environ, PYTHONUNBUFFERED="1"))

    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CompressedImage, Image, NavSatFix

    from jzi_ros.inference.localizer import Localizer
    from jzi_ros.ros.node import localizer_config

    rclpy.init()
    test = rclpy.create_node("jzi_play_bag")
    fixes: dict[int, NavSatFix] = {}
    fix_sub = test.create_subscription(
        NavSatFix, "jzi/fix",
        lambda m: fixes.setdefault(stamp_to_ns(m.header.stamp), m),
        QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
    # the node subscribes to <base>/compressed: the bag's topic (image_transport convention)
    camera = test.create_publisher(CompressedImage if compressed else Image, args.image_topic,
                                   QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))
    began = time.monotonic()
    while camera.get_subscription_count() == 0 or fix_sub.get_publisher_count() == 0:
        if node.poll() is not None or time.monotonic() - began > 300:
            raise SystemExit("node did not come up")
        rclpy.spin_once(test, timeout_sec=0.1)
    offline = Localizer.from_paths(args.map_dir, model, localizer_config(settings))
    to_rgb = compressed_msg_to_rgb if compressed else image_msg_to_rgb

    worst_m, lost, played = 0.0, 0, time.monotonic()
    for frame in frames:
        msg = CompressedImage() if compressed else Image()
        msg.header.stamp.sec = int(frame.header.stamp.sec)
        msg.header.stamp.nanosec = int(frame.header.stamp.nanosec)
        msg.header.frame_id = frame.header.frame_id
        if compressed:
            msg.format, msg.data = frame.format, bytes(frame.data)
        else:
            msg.height, msg.width, msg.encoding = frame.height, frame.width, frame.encoding
            msg.step, msg.data = frame.step, bytes(frame.data)
        stamp = stamp_to_ns(frame.header.stamp)
        deadline, last = time.monotonic() + args.timeout_s, 0.0
        while stamp not in fixes and time.monotonic() < deadline:
            if time.monotonic() - last > 2.0:  # best effort: resend a lost frame
                camera.publish(msg)
                last = time.monotonic()
            rclpy.spin_once(test, timeout_sec=0.05)
        if stamp not in fixes:
            lost += 1
            continue
        graph_fix, fix = fixes[stamp], offline.localize(to_rgb(frame))
        worst_m = max(worst_m, distance_m(graph_fix.latitude, graph_fix.longitude,
                                          fix.latitude, fix.longitude))
    elapsed = time.monotonic() - played
    node.send_signal(signal.SIGINT)
    code = node.wait(timeout=30)
    stamps = {stamp_to_ns(f.header.stamp) for f in frames}
    print(f"played {len(frames)} frames in {elapsed:.1f} s: {len(fixes)} fixes, {lost} lost, "
          f"all fix stamps are image stamps: {set(fixes) <= stamps}")
    print(f"largest distance graph fix vs offline Localizer on the same frame: {worst_m:.3g} m")
    print(f"node exit code after SIGINT: {code}")
    test.destroy_node()
    rclpy.shutdown()
    return 0 if lost == 0 and code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
