"""Helpers shared by the dataset commands (map build, localize, evaluate)."""
from __future__ import annotations


def frontend_from_args(name: str, checkpoint: str | None):
    """Front-end by name; the mast3r one gets its checkpoint (a local file, never downloaded)."""
    from mast3r_ros.localization.frontend import make_frontend

    if name == "mast3r":
        from mast3r_ros.localization.mast3r_frontend import Mast3rFrontEndConfig

        return make_frontend(name, Mast3rFrontEndConfig(checkpoint=checkpoint or ""))
    return make_frontend(name)


def calibration_from_arg(preset_or_path: str | None):
    """RGB-D calibration from a preset name ('7scenes') or YAML path; None when not given."""
    from mast3r_ros.localization.rgbd import RgbdCalibration

    return RgbdCalibration.load(preset_or_path) if preset_or_path else None
