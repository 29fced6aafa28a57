"""The streamed monocular mapper's parameters (torch-free, so the mapping node's schema reads its
defaults here; the engine is :mod:`mast3r_ros.mapping.monocular_stream`)."""
from __future__ import annotations

from dataclasses import dataclass

from mast3r_ros.config_fields import setting


@dataclass
class MonocularStreamConfig:
    """Keyframes of the streamed monocular mapper (the mapping node's ``mono.*`` parameters)."""
    kf_min_interval_s: float = setting(0.4, "without odometry: a frame is a keyframe when its stamp is at "
                                       "least this long after the last keyframe's (s)", min=0.0, max=3600.0)
    max_keyframes: int = setting(128, "keyframes kept in the map; more are refused (the status says so) until "
                                 "reset (memory per keyframe at 512 px with the released model, from the array "
                                 "sizes: encoder tokens 3.1 MB, points 2.4 MB, a 640x480 image 0.9 MB, its "
                                 "cloud 0.2 MB)", min=2, max=10000)
    window_keyframes: int = setting(32, "keyframes a mapping pass re-optimises: the newest ones, joined to the "
                                    "map by up to 3 older keyframes held at their poses; older keyframes keep "
                                    "theirs (memory: the window's image pairs, 6.3 MB each at 512 px, about "
                                    "4.4 pairs per keyframe)", min=2, max=10000)
    pass_every_n_keyframes: int = setting(4, "run a mapping pass in the background once this many keyframes "
                                          "came since the last one (0 = only at optimize / save_map); a pass "
                                          "decodes only image pairs it has not seen", min=0, max=10000)
    estimate_focal: bool = setting(False, "estimate the focal length in the mapping pass (else camera_info's "
                                   "K is kept fixed)")
