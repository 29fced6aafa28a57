"""mast3r_ros.ros.bag: rosbag2 files without rosbag2 (``rosbags``): write, play over DDS, replay offline.

Modules
-------
* :mod:`~mast3r_ros.ros.bag.bag_io` - write a posed RGB-D dataset as a bag (``mast3r-ros make-bag``), read bags.
* :mod:`~mast3r_ros.ros.bag.bag_play` - publish a bag with its recorded timing (``mast3r-ros play``).
* :mod:`~mast3r_ros.ros.bag.replay` - the localization core over a bag, deterministic (``mast3r-ros replay``).

Import the modules by path; this package imports nothing so that it stays cheap.
"""

__all__ = ["bag_io", "bag_play", "replay"]
