"""The demo on a real ROS 2 graph: play the demo bag and localize its camera frames.

jzi demo            # once: builds ~/.cache/jzi_ros/demo/{map,bag}
ros2 launch jzi_ros demo.launch.py [demo_dir:=~/.cache/jzi_ros/demo] [rate:=1.0]
ros2 topic echo /jzi/fix
"""
import os
from importlib import resources

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from jzi_ros.ros.params import NODE_NAME, launch_parameters

DEMO_MODEL = "data/demo_model.safetensors"  # shipped inside the jzi_ros Python package


def _start(context):
    def arg(name):
        return LaunchConfiguration(name).perform(context)

    demo_dir = os.path.expanduser(arg("demo_dir"))
    bag = os.path.join(demo_dir, "bag")
    model = arg("model_file") or str(resources.files("jzi_ros").joinpath(DEMO_MODEL))
    for what, path in (("demo bag", bag), ("demo map", os.path.join(demo_dir, "map")),
                       ("demo model", model)):
        if not os.path.exists(path):
            raise RuntimeError(f"{what} not found at {path}: run `jzi demo` first "
                               "(or pass demo_dir:=DIR / model_file:=FILE)")
    parameters = launch_parameters(arg("params_file"), {
        "map_dir": os.path.join(demo_dir, "map"), "model_file": model,
        "image_topic": arg("image_topic"), "image_transport": arg("image_transport")})
    parameters["use_sim_time"] = True  # the bag publishes /clock
    return [
        Node(package="jzi_ros", executable="jzi_localizer", name=NODE_NAME,
             parameters=[parameters], output="screen", emulate_tty=True),
        ExecuteProcess(cmd=["ros2", "bag", "play", bag, "--clock", "--rate", arg("rate")],
                       output="screen"),
    ]


def generate_launch_description():
    share = get_package_share_directory("jzi_ros")
    return LaunchDescription([
        DeclareLaunchArgument("demo_dir", default_value="~/.cache/jzi_ros/demo",
                              description="Directory written by `jzi demo` (map/ and bag/)"),
        DeclareLaunchArgument("model_file", default_value="",
                              description="Checkpoint; empty: the demo model shipped with "
                                          "jzi_ros"),
        DeclareLaunchArgument("params_file",
                              default_value=os.path.join(share, "config", "localize.yaml"),
                              description="jzi_localizer parameters"),
        DeclareLaunchArgument("image_topic", default_value="/camera/image_raw",
                              description="Camera topic recorded in the demo bag"),
        DeclareLaunchArgument("image_transport", default_value="raw",
                              description="raw or compressed, as recorded in the demo bag"),
        DeclareLaunchArgument("rate", default_value="1.0", description="Bag playback rate"),
        OpaqueFunction(function=_start),
    ])
