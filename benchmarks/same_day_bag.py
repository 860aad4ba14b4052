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
Write the demo flight as a bag flown on the map's own day (a refinement-within-fusion check).

The demo bag is flown on another day (other season, sun and colours than the map), where
local features find nothing (docs/refinement.md: 0 % accepted), so a replay of it with
``--method refine --fusion`` never feeds the filter a refined fix. This writes the same flight
(the same poses, stamps and odometry as ``jzi demo``'s bag of that seed) rendered in the map's
own style, where refinement accepts about half of the frames, as a bag with the demo's topics;
then replay it:

    PYTHONPATH=. python benchmarks/same_day_bag.py --demo-workdir DEMO --out BAG

prints the ``jzi replay BAG --map DEMO/map ... --fusion --odom-topic /odom --method refine
--intrinsics FX,FY,CX,CY`` command (the demo's topics, the flight camera's intrinsics).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from jzi_ros.demo import odometry, stages
from jzi_ros.demo.bag import GT_TOPIC, IMAGE_TOPIC, write_bag
from jzi_ros.demo.flight import FlightSpec, fly
from jzi_ros.demo.flow import model_card, shipped_model
from jzi_ros.demo.style import render, Style
from jzi_ros.demo.views import capture


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo-workdir", type=Path, required=True,
                        help="a `jzi demo --workdir` directory (its map/ is replayed against)")
    parser.add_argument("--out", type=Path, required=True, help="bag directory to write")
    parser.add_argument("--seed", type=int, default=0, help="flight seed (the demo's: 0)")
    parser.add_argument("--frames", type=int, default=FlightSpec().frames)
    args = parser.parse_args()
    model = shipped_model()
    spec, tree, _ = model_card(model)
    world = stages.world_of(spec)
    rng, _ = stages.flight_day(args.seed)  # the demo flight's random stream: its poses
    flight = FlightSpec(frames=args.frames)
    poses, stamps = fly(rng, tree.size_m, flight)
    styled = render(world, Style.map())
    camera = flight.camera
    frames = ((stamp, capture(world, styled, camera, pose, rng),
               (pose.east_m, pose.north_m, pose.altitude_m))
              for stamp, pose in zip(stamps, poses))
    track = np.array([(pose.east_m, pose.north_m) for pose in poses])
    write_bag(args.out, tree, frames, overwrite=True,
              odometry=odometry.simulate(args.seed, track, stamps))
    K = camera.K()
    print(f"wrote {args.out} ({len(poses)} frames); replay with\n  jzi replay {args.out} "
          f"--map {args.demo_workdir / 'map'} --model {model} --backend torch --image-topic "
          f"{IMAGE_TOPIC} --gt-topic {GT_TOPIC} --fusion --odom-topic {odometry.ODOM_TOPIC} "
          f"--method refine --intrinsics {K[0, 0]:.6g},{K[1, 1]:.6g},{K[0, 2]:.6g},"
          f"{K[1, 2]:.6g} --out REPORT")


if __name__ == "__main__":
    main()
