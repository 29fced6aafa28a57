"""mast3r_ros.localization (ROS-free core): image -> gated camera pose in a keyframe map.

Modules
-------
* :mod:`~mast3r_ros.localization.localizer` - the Localizer: retrieval, matching, pose, gates, state.
* :mod:`~mast3r_ros.localization.frontends` - the front-ends (classical, MASt3R) and ``make_frontend``.
* :mod:`~mast3r_ros.localization.keyframe_cache` - byte-bounded LRU of the keyframes' arrays read from the map.
* :mod:`~mast3r_ros.localization.retrieval` - keyframe retrieval: VLAD over local descriptors, cosine top-k.
* :mod:`~mast3r_ros.localization.pose` - absolute pose from 2D-3D correspondences (PnP + RANSAC + refinement).
* :mod:`~mast3r_ros.localization.covariance` - 6x6 pose covariance in ROS ``PoseWithCovariance`` order.
* :mod:`~mast3r_ros.localization.state` - acceptance gates and the INIT/TRACKING/LOST/RELOCALIZING machine.
* :mod:`~mast3r_ros.localization.prior` - the search region of a pose prior from its covariance (/initialpose).
* :mod:`~mast3r_ros.localization.mapfree` - map-free localization against one posed reference image.
* :mod:`~mast3r_ros.localization.mapfree_reference` - a posed reference that later queries are solved against.
* :mod:`~mast3r_ros.localization.evaluation` - build a map, localize every query, compare with ground truth.

The map itself is :mod:`mast3r_ros.map`; dataset readers and TUM files are :mod:`mast3r_ros.datasets`.
Import the modules by path; this package imports nothing so that it stays cheap.
"""

__all__ = ["covariance", "evaluation", "frontends", "keyframe_cache", "localizer", "mapfree", "mapfree_reference",
           "pose", "prior", "retrieval", "state"]
