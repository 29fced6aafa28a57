"""mast3r_ros.data: self-contained data the package can generate (the synthetic RGB-D room)."""
from mast3r_ros.data.synthetic_room import (
    SyntheticRoomConfig,
    SyntheticSequenceInfo,
    default_demo_dataset,
    load_sequence_info,
    render_synthetic_sequence,
)

__all__ = ["SyntheticRoomConfig", "SyntheticSequenceInfo", "default_demo_dataset",
           "load_sequence_info", "render_synthetic_sequence"]
