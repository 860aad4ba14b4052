"""jzi_ros: Just Zoom In cross-view geo-localization for ROS 2 (ROS-free core + thin ROS layer)."""
__version__ = "0.1.0"
