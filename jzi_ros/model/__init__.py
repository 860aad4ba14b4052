"""The zoom model: DINOv2 encoder + causal zooming decoder, configs, preprocessing, checkpoints."""
from jzi_ros.model.checkpoint import (load_checkpoint, read_header, save_checkpoint,
                                      update_checkpoint_metadata)
from jzi_ros.model.config import DecoderConfig, EncoderConfig, ModelConfig
from jzi_ros.model.preprocess import ground_pixels, view_pixels
from jzi_ros.model.zoom import ZoomModel

__all__ = ["DecoderConfig", "EncoderConfig", "ModelConfig", "ZoomModel", "ground_pixels",
           "load_checkpoint", "read_header", "save_checkpoint", "update_checkpoint_metadata",
           "view_pixels"]
