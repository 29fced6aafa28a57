"""mast3r_ros.map (ROS-free core): the keyframe map, one place for its format, store, builder and names.

Modules
-------
* :mod:`~mast3r_ros.map.keys` - every array/global name a map stores (retrieval index, front-end arrays).
* :mod:`~mast3r_ros.map.format` - on-disk format v1: Keyframe, MapMeta, MapError, SQLite schema, map.yaml.
* :mod:`~mast3r_ros.map.folder` - which files of a map folder are the store's; the one-writer lock; copy.
* :mod:`~mast3r_ros.map.store` - :class:`KeyframeMap`: crash-safe create/open/write of a map folder.
* :mod:`~mast3r_ros.map.store_read` - the read-only queries KeyframeMap inherits.
* :mod:`~mast3r_ros.map.check` - damage reports (``mast3r-ros map check``; what opening a map refuses).
* :mod:`~mast3r_ros.map.build` - build a map from a posed RGB-D dataset and a front-end; the retrieval index.
* :mod:`~mast3r_ros.map.mapper_io` - the incremental mapper's maps: write one, read one back to continue it.
* :mod:`~mast3r_ros.map.cloud` - the map as a coloured point cloud (the nodes' latched ``cloud_map``).

``build`` and ``mapper_io`` are imported by their module path (``from mast3r_ros.map.build import
build_map``), not here: they use the localization front-ends, which themselves import this package.

Conventions: ``T_map_cam`` [4,4] float64 camera-to-map (OpenCV optical frame, metres); ``K`` [3,3]
float64 pixels, pixel-centre convention.
"""
from mast3r_ros.map.check import check_map, damage_line, quick_problems
from mast3r_ros.map.format import FORMAT_VERSION, Keyframe, MapError, MapMeta
from mast3r_ros.map.store import KeyframeMap

__all__ = ["FORMAT_VERSION", "Keyframe", "KeyframeMap", "MapError", "MapMeta", "check_map", "damage_line",
           "quick_problems"]
