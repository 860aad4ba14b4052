"""The embedded demo: a generated aerial world, drone views of it, a bag, and `jzi demo`.

Everything here is deterministic by seed and needs only numpy, OpenCV, rasterio and rosbags,
so a fresh machine without data, GPU or ROS 2 can see the localizer work.
"""
