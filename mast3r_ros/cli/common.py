"""Helpers shared by the dataset commands (map build, localize, evaluate, relocalize)."""
from __future__ import annotations

import argparse


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``--checkpoint`` and its stand-in ``--oracle-model [--oracle-noise ...]`` (mast3r front-end)."""
    parser.add_argument("--checkpoint", default=None, help="MASt3R checkpoint (mast3r front-end only)")
    parser.add_argument("--oracle-model", action="store_true",
                        help="instead of --checkpoint: the ground-truth stand-in built from the dataset's depth and "
                             "poses with realistic injected errors (accuracy with the released weights is NOT "
                             "what this measures)")
    parser.add_argument("--oracle-noise", default=None, metavar="K=V,...",
                        help="--oracle-model errors, e.g. depth_rel=0.02,pair_scale=0.03,view_scale=0.01,"
                             "rel_rot_deg=1.0,rel_trans=0.02,desc_outliers=0.1,desc_noise=0.05,seed=0 "
                             "(unnamed knobs keep these defaults)")


def add_set_argument(parser: argparse.ArgumentParser, sections: str) -> None:
    """``--set NAME=VALUE`` (repeatable): a setting of the core dataclasses by its nested name, as the ROS
    parameters name it (``mast3r_ros.config_fields``); ``sections``: the roots this command fills."""
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", dest="sets",
                        help=f"a setting by its nested name (repeatable), e.g. localizer.retrieval.top_k=3; "
                             f"sections here: {sections} (names, defaults and ranges: the README's parameter "
                             "table)")


def configs_from_args(args, **configs):
    """``configs`` (section name -> core dataclass, the command's flags already applied) with every
    ``--set`` applied; ValueError (one line, naming the item) for an unknown name or a bad value."""
    from mast3r_ros.config_fields import apply_sets

    return apply_sets(configs, args.sets)


def oracle_from_args(args, dataset, frames, calib=None):
    """The oracle model for ``dataset`` with ``frames`` (spec or indices) registered, or None when
    ``--oracle-model`` is not given. Raises ValueError on conflicting or malformed options."""
    if not getattr(args, "oracle_model", False):
        if getattr(args, "oracle_noise", None):
            raise ValueError("--oracle-noise needs --oracle-model")
        return None
    if getattr(args, "checkpoint", None):
        raise ValueError("give --checkpoint or --oracle-model, not both")
    from mast3r_ros.model.oracle import OracleModel, OracleNoise

    return OracleModel.from_dataset(dataset, OracleNoise.parse(args.oracle_noise), frames, calib)


def model_label(name: str, checkpoint: str | None, oracle=None) -> str:
    """What made the predictions, for reports, plot titles and status lines."""
    if oracle is not None:
        return "oracle"
    if name == "mast3r":
        return f"checkpoint {checkpoint}"
    return "none (classical)"


def frontend_from_args(name: str, checkpoint: str | None, oracle=None, config=None):
    """Front-end by name; the mast3r one gets ``config`` (a Mast3rFrontEndConfig, default its defaults)
    with its checkpoint (``checkpoint``, a local file, never downloaded, or the config's own) or the
    oracle model."""
    from mast3r_ros.localization.frontends import make_frontend

    if oracle is not None and name != "mast3r":
        raise ValueError("--oracle-model stands in for the MASt3R network: use it with --frontend mast3r")
    if name == "mast3r":
        from dataclasses import replace

        from mast3r_ros.localization.frontends.mast3r import Mast3rFrontEnd, Mast3rFrontEndConfig

        config = config or Mast3rFrontEndConfig()
        if oracle is not None:
            return Mast3rFrontEnd(config, model=oracle)
        return make_frontend(name, replace(config, checkpoint=checkpoint) if checkpoint else config)
    return make_frontend(name)


def calibration_from_arg(preset_or_path: str | None):
    """RGB-D calibration from a preset name ('7scenes') or YAML path; None when not given."""
    from mast3r_ros.datasets.calibration import RgbdCalibration

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
