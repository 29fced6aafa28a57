"""mast3r_ros.mapping (ROS-free core): keyframe poses, intrinsics and a cloud from pairs of views.

Modules
-------
Sparse global alignment (the paper's method, front-end independent):

* :mod:`~mast3r_ros.mapping.types` - its inputs (views, pairs) and result.
* :mod:`~mast3r_ros.mapping.alignment_config` - its settings and the named presets (paper, rgbd_batch, ...).
* :mod:`~mast3r_ros.mapping.problem` - views + pairs -> the flat arrays the optimiser iterates on.
* :mod:`~mast3r_ros.mapping.canonical` - canonical views, focal estimation, the anchor grid.
* :mod:`~mast3r_ros.mapping.kinematic` - the spanning tree that roots every camera pose.
* :mod:`~mast3r_ros.mapping.sparse_ga` - the optimiser (3D matching, then 2D reprojection).
* :mod:`~mast3r_ros.mapping.outputs` - cleaned coloured point cloud, PLY files.

Pairs and maps:

* :mod:`~mast3r_ros.mapping.pairs` - which pairs are predicted; classical RGB-D pair inputs.
* :mod:`~mast3r_ros.mapping.mast3r_pairs` - MASt3R network pairs -> optimiser inputs (encode once, FRM).
* :mod:`~mast3r_ros.mapping.pipeline` - optimise a keyframe map in place (``map build --optimize``).
* :mod:`~mast3r_ros.mapping.mast3r_map` - the same for MASt3R maps, from their cached encodings.
* :mod:`~mast3r_ros.mapping.monocular` - images only -> a metric keyframe map (``--no-depth``).
* :mod:`~mast3r_ros.mapping.oracle` - ground-truth pairwise predictions for testing the optimiser.

The mapping node's engines:

* :mod:`~mast3r_ros.mapping.incremental` / :mod:`~mast3r_ros.mapping.incremental_config` - RGB-D keyframes
  tracked and re-optimised as they come (classical front-end).
* :mod:`~mast3r_ros.mapping.incremental_pass` - its windowed / global passes and background worker.
* :mod:`~mast3r_ros.mapping.monocular_stream` / :mod:`~mast3r_ros.mapping.monocular_stream_config` -
  buffered keyframes mapped by :mod:`~mast3r_ros.mapping.monocular` (MASt3R front-end, no depth).

Import the modules by path; this package imports nothing so that it stays cheap.
"""

__all__ = ["alignment_config", "canonical", "incremental", "incremental_config", "incremental_pass", "kinematic",
           "mast3r_map", "mast3r_pairs", "monocular", "monocular_stream", "monocular_stream_config", "oracle",
           "outputs", "pairs", "pipeline", "problem", "sparse_ga", "types"]
