"""mast3r_ros: camera localization and mapping for ROS 2 robots built on MASt3R.

The core sub-packages (model, matching, geometry, localization, mapping, map, datasets, files) never
import rclpy; the ROS 2 adapter lives in :mod:`mast3r_ros.ros`.
"""

import os

__version__ = "0.1.0"

# OpenMP threads that wait at the end of a parallel region sleep instead of spinning, unless the user
# chose otherwise. Why: on a CPU shared with other processes (a robot's computer, a loaded build
# machine) a spinning thread burns the timeslice that the thread it waits for needs; the exact NN
# search of FRM runs ~1000 short parallel regions per search, and on the 2-core machine under load
# (load average ~10) one 512x384 FRM (8-px seeds, pixel_tol 5) took 41.9 s with spinning and 4.7 s
# with sleeping waits (benchmarks/README.md). Read by libgomp when torch is first imported, so it
# only acts when mast3r_ros is imported first (the `mast3r-ros` command and the nodes).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
