"""Pure geometry (ROS-free, numpy only): cameras, rigid transforms, alignment, two-view geometry.

Conventions used throughout the package:

* Camera frame: OpenCV optical (x right, y down, z forward along the optical axis), metres.
* Poses ``T_a_b``: [4,4] float64 homogeneous matrices mapping points expressed in frame ``b`` to
  frame ``a`` (``X_a = T_a_b @ X_b``). ``T_map_cam`` is the camera-to-map pose.
* Pixels (x, y): OpenCV convention, the *centre* of the top-left pixel is at (0, 0); a pixel
  (x, y) back-projects along ``K^-1 [x, y, 1]``.

Modules
-------
* :mod:`~mast3r_ros.geometry.camera` - projection, back-projection, intrinsics checks and scaling.
* :mod:`~mast3r_ros.geometry.transforms` - rigid transforms: compose, invert, apply, pose errors.
* :mod:`~mast3r_ros.geometry.alignment` - similarity / rigid alignment of point sets (Umeyama).
* :mod:`~mast3r_ros.geometry.twoview` - two-view geometry: essential matrix, triangulation, metric scale.
"""
from mast3r_ros.geometry.alignment import umeyama
from mast3r_ros.geometry.camera import (
    backproject_depth,
    check_intrinsics,
    project_points,
    scale_intrinsics,
    undistort_points,
)
from mast3r_ros.geometry.transforms import (
    compose,
    invert,
    make_T,
    pose_errors,
    rotation_error_deg,
    transform_points,
    translation_error,
)

__all__ = ["umeyama", "backproject_depth", "check_intrinsics", "project_points", "scale_intrinsics",
           "undistort_points", "compose", "invert", "make_T", "pose_errors", "rotation_error_deg",
           "transform_points", "translation_error"]
