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
Demo camera frames: the world's styled rendering seen through the generic view renderer.

The camera model, pose sampling and sensor degradation live in
:mod:`jzi_ros.training.render` (they serve any raster); the demo's world is one more ground
for it, an in-memory north-up array in the tree's frame.
"""
from __future__ import annotations

import numpy as np

from jzi_ros.demo.world import World
from jzi_ros.training.camera import CameraModel, CameraPose
from jzi_ros.training.render import ArrayGround, degrade_frame


def capture(world: World, styled: np.ndarray, camera: CameraModel, pose: CameraPose,
            rng: np.random.Generator, degrade: float = 1.0) -> np.ndarray:
    """Render and degrade one frame (RGB uint8 [height, width, 3])."""
    image, _ = ArrayGround(styled, world.pixel_to_local(), "demo").view(camera, pose)
    return degrade_frame(image, rng, degrade) if degrade > 0 else image
