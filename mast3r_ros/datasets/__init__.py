"""mast3r_ros.datasets (ROS-free core): posed RGB-D sequences in, trajectories out, and the data we generate.

Modules
-------
* :mod:`~mast3r_ros.datasets.readers` - 7-Scenes and TUM RGB-D readers: frames, K, depth, ground-truth poses.
* :mod:`~mast3r_ros.datasets.tum` - TUM trajectory files (``timestamp tx ty tz qx qy qz qw``): read, write.
* :mod:`~mast3r_ros.datasets.calibration` - RGB-D rig calibration: colour/depth intrinsics, depth-to-colour.
* :mod:`~mast3r_ros.datasets.image_files` - user image files: pixels bounded before decoding, 16-bit scaled to 8-bit.
* :mod:`~mast3r_ros.datasets.synthetic_room` - the synthetic RGB-D room rendered into 7-Scenes layout.
* :mod:`~mast3r_ros.datasets.raycast` - ray/box intersection and face sampling for the synthetic room.
* :mod:`~mast3r_ros.datasets.textures` - procedural wall and object textures for the synthetic room.

Conventions: ``K`` [3,3] float64 pixels, pixel-centre convention; ``T_world_cam`` [4,4] float64
camera-to-world, OpenCV optical frame, metres; depth [H,W] float32 metres, 0 = invalid.
"""
from mast3r_ros.datasets.calibration import RgbdCalibration
from mast3r_ros.datasets.readers import (
    DatasetError,
    Frame,
    FrameSpec,
    RgbdDataset,
    SevenScenesDataset,
    TumRgbdDataset,
    open_dataset,
    parse_frame_spec,
)
from mast3r_ros.datasets.synthetic_room import (
    SyntheticRoomConfig,
    SyntheticSequenceInfo,
    default_demo_dataset,
    load_sequence_info,
    render_synthetic_sequence,
)
from mast3r_ros.datasets.tum import read_tum, write_tum

__all__ = ["DatasetError", "Frame", "FrameSpec", "RgbdDataset", "SevenScenesDataset", "TumRgbdDataset",
           "open_dataset", "parse_frame_spec", "read_tum", "write_tum", "RgbdCalibration",
           "SyntheticRoomConfig", "SyntheticSequenceInfo", "default_demo_dataset", "load_sequence_info",
           "render_synthetic_sequence"]
