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


def output_file(path: str, flag: str):
    """``path`` as a Path after checking it can be a file to write: ValueError naming the flag when it
    is an existing folder or its parent is not a folder."""
    from pathlib import Path

    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{flag} {path} is a folder; give a file path")
    if p.parent.exists() and not p.parent.is_dir():
        raise ValueError(f"{flag} {path}: {p.parent} is not a folder")
    return p


def torch_device(name: str):
    """``--device`` value as a torch.device; ValueError naming the flag for unknown or absent devices."""
    import torch

    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise ValueError(f"--device {name!r} is not a device: use cpu or cuda[:N]") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {name!r}: only cpu and cuda[:N] are supported")
    if dev.type == "cuda" and (not torch.cuda.is_available() or (dev.index or 0) >= torch.cuda.device_count()):
        raise ValueError(f"--device {name!r}: no such CUDA device on this machine")
    return dev
