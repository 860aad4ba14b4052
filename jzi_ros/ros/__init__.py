"""The ROS 2 layer: message conversions (ROS-free, also used with rosbags) and the rclpy node.

Only ``jzi_ros.ros.node`` imports rclpy; ``convert``, ``params`` and ``runtime`` import no ROS
module at load time so that tests and the bag tools run without a ROS 2 installation.
"""
