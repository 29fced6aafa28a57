"""ros2 launch mast3r_ros mast3r.launch.py mode:=localization|mapping map:=DIR ...

Thin on purpose: the node list and parameters come from
``mast3r_ros.ros.nodes.launch_description.describe`` (tested without ``launch``, and shared with
``mast3r-ros launch``). Arguments: see ``LAUNCH_ARGUMENTS`` there (or ``ros2 launch ... -s``).
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from mast3r_ros.ros.nodes.launch_description import LAUNCH_ARGUMENTS, describe


def _nodes(context, *args, **kwargs):
    values = {name: LaunchConfiguration(name).perform(context) for name, _, _ in LAUNCH_ARGUMENTS}
    return [Node(package=s.package, executable=s.executable, name=s.name, namespace=s.namespace or None,
                 parameters=s.parameters, remappings=s.remappings, arguments=s.arguments,
                 ros_arguments=s.log_args(), output="screen",
                 emulate_tty=True)
            for s in describe(values)]


def generate_launch_description():
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=desc)
         for name, default, desc in LAUNCH_ARGUMENTS] + [OpaqueFunction(function=_nodes)])
