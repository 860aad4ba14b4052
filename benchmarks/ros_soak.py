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
Soak: jzi_localizer under a camera stream on a real ROS 2 graph for minutes.

Does its memory stay flat, and does it ever publish a NaN? A measurement, not a test: it prints
the node's resident memory every ``--sample-s`` seconds, the frames sent / fixes received and
every non-finite fix it saw. Needs rclpy (``pip install -e .[ros-pip]``); the node runs as its
own process (as ``ros2 run`` starts it) on the tiny map and model of test/support.py, or on
``--map-dir`` / ``--model-file``. DDS stays on this machine (LOCALHOST discovery).

    nice -n 10 .venv/bin/python benchmarks/ros_soak.py --duration-s 600 --rate-hz 30
    .venv/bin/python benchmarks/ros_soak.py --map-dir DEMO/map --model-file MODEL
        --param cpu_graph:=aoti --param threads:=1 --duration-s 60 --rate-hz 100  (one line)
"""
from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def rss_mb(pid: int) -> float:
    """Return the resident set size of process ``pid`` in MiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmRSS for pid {pid}")


def tiny_assets(root: Path) -> tuple[Path, Path]:
    """Build the tests' tiny map and model (test/support.py) under ``root``."""
    sys.path.insert(0, str(ROOT / "test"))
    from support import make_tiny_checkpoint, make_tiny_map

    pyramid = make_tiny_map(root)
    return pyramid.path, make_tiny_checkpoint(root, pyramid)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--duration-s", type=float, default=600.0)
    parser.add_argument("--rate-hz", type=float, default=30.0)
    parser.add_argument("--sample-s", type=float, default=30.0)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--map-dir", type=Path)
    parser.add_argument("--model-file", type=Path)
    parser.add_argument("--param", action="append", default=[], metavar="NAME:=VALUE",
                        help="another node parameter (repeatable), e.g. cpu_graph:=aoti")
    args = parser.parse_args()

    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(120 + os.getpid() % 100))
    tmp = Path(tempfile.mkdtemp(prefix="jzi_soak_"))
    if args.map_dir and args.model_file:
        map_dir, model = args.map_dir, args.model_file
    else:
        map_dir, model = tiny_assets(tmp)

    node = subprocess.Popen(
        [sys.executable, "-m", "jzi_ros.ros.node", "--ros-args", "-p", f"map_dir:={map_dir}",
         "-p", f"model_file:={model}", "-p", "backend:=torch", "-p", "device:=cpu",
         *[part for param in args.param for part in ("-p", param)]],
        stdout=open(tmp / "node.log", "w"), stderr=subprocess.STDOUT,
        env=dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1"))

    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image, NavSatFix

    rclpy.init()
    test = rclpy.create_node("jzi_soak")
    fixes = {"count": 0, "non_finite": 0, "no_fix": 0}

    def on_fix(msg):
        fixes["count"] += 1
        values = [msg.latitude, msg.longitude, msg.altitude, *msg.position_covariance]
        if not all(math.isfinite(v) for v in values):
            fixes["non_finite"] += 1
            print(f"NON-FINITE fix at stamp {msg.header.stamp.sec}: {values}", flush=True)
        if msg.status.status < 0:
            fixes["no_fix"] += 1

    test.create_subscription(NavSatFix, "jzi/fix", on_fix,
                             QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
    camera = test.create_publisher(Image, "camera/image_raw",
                                   QoSProfile(depth=1,
                                              reliability=ReliabilityPolicy.BEST_EFFORT))
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (args.height, args.width, 3), np.uint8).tobytes()
              for _ in range(4)]
    started = time.monotonic()
    while camera.get_subscription_count() == 0:  # the node loads its map and model first
        if node.poll() is not None or time.monotonic() - started > 300:
            print((tmp / "node.log").read_text())
            raise SystemExit("node did not come up")
        rclpy.spin_once(test, timeout_sec=0.1)
    print(f"node up after {time.monotonic() - started:.1f} s (pid {node.pid}); streaming "
          f"{args.width}x{args.height} rgb8 at {args.rate_hz:g} Hz for {args.duration_s:g} s",
          flush=True)
    print(f"{'t (s)':>7} {'RSS (MiB)':>10} {'frames':>8} {'fixes':>7} {'no-fix':>7} "
          f"{'non-finite':>10}", flush=True)
    period = 1.0 / args.rate_hz
    began = time.monotonic()
    next_frame, next_sample, sent, samples = began, began, 0, []
    while (now := time.monotonic()) - began < args.duration_s:
        if now >= next_sample:
            samples.append(rss_mb(node.pid))
            print(f"{now - began:7.0f} {samples[-1]:10.1f} {sent:8d} {fixes['count']:7d} "
                  f"{fixes['no_fix']:7d} {fixes['non_finite']:10d}", flush=True)
            next_sample += args.sample_s
        if now >= next_frame:
            msg = Image(height=args.height, width=args.width, encoding="rgb8",
                        step=args.width * 3, data=frames[sent % len(frames)])
            stamp_ns = time.time_ns()
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
            msg.header.frame_id = "camera_link"
            camera.publish(msg)
            sent += 1
            next_frame += period
        rclpy.spin_once(test, timeout_sec=max(0.0, min(next_frame, next_sample)
                                              - time.monotonic()))
    samples.append(rss_mb(node.pid))
    elapsed = time.monotonic() - began
    node.send_signal(signal.SIGINT)
    stop_began = time.monotonic()
    code = node.wait(timeout=30)
    print(f"sent {sent} frames ({sent / elapsed:.1f} Hz), received {fixes['count']} fixes "
          f"({fixes['count'] / elapsed:.1f} Hz), {fixes['no_fix']} NO_FIX, "
          f"{fixes['non_finite']} non-finite")
    print(f"node RSS: first sample {samples[0]:.1f} MiB, min {min(samples):.1f}, "
          f"max {max(samples):.1f}, last {samples[-1]:.1f} (growth after the first minute: "
          f"{samples[-1] - samples[min(2, len(samples) - 1)]:+.1f} MiB)")
    print(f"SIGINT: exit code {code} after {time.monotonic() - stop_began:.1f} s")
    test.destroy_node()
    rclpy.shutdown()
    return 0 if fixes["non_finite"] == 0 and code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
