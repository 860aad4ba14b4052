"""Onboard map: build a tile pyramid from imagery, open it, store its view embeddings."""
from jzi_ros.maps.pyramid import MapPyramid, write_pyramid

__all__ = ["MapPyramid", "write_pyramid"]
