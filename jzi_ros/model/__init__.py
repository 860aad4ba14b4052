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

"""The zoom model: DINOv2 encoder + causal zooming decoder, configs, preprocessing, checkpoints."""
from jzi_ros.model.checkpoint import (load_checkpoint, read_header, save_checkpoint,
                                      update_checkpoint_metadata)
from jzi_ros.model.config import DecoderConfig, EncoderConfig, ModelConfig
from jzi_ros.model.preprocess import ground_pixels, view_pixels
from jzi_ros.model.zoom import ZoomModel

__all__ = ["DecoderConfig", "EncoderConfig", "ModelConfig", "ZoomModel", "ground_pixels",
           "load_checkpoint", "read_header", "save_checkpoint", "update_checkpoint_metadata",
           "view_pixels"]
