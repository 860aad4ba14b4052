"""Evaluation: metrics, rosbag replay, reports and plots."""
