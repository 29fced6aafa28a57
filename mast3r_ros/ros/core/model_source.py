"""What makes a node's MASt3R predictions: the ``checkpoint`` or, with ``oracle_dataset``, the
ground-truth stand-in (:class:`mast3r_ros.model.oracle.OracleModel`, as the CLI's ``--oracle-model``).

The stand-in knows only its dataset's images (a ``make-bag`` bag of that dataset drives a node with
it): every posed frame of the dataset is registered when the node is configured. Its geometry is
the dataset's seen from the colour camera of ``rgbd_calibration`` or, when that parameter is '', of
the calibration ``map_path``'s map was built with (as ``mast3r-ros localize`` takes the map's); a map
built with another calibration (or from another dataset) is refused at load, naming both hashes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mast3r_ros.datasets.calibration import RgbdCalibration
from mast3r_ros.ros.core.params import NodeParams


def model_label(p: NodeParams) -> str:
    """What makes the predictions, as the CLI's reports say it (``cli.common.model_label``)."""
    from mast3r_ros.cli.common import model_label as label

    return label(p.frontend, str(p.mast3r.checkpoint) or None, p.oracle_dataset or None)  # both nodes have mast3r.*


def oracle_calibration(p: NodeParams, calib: RgbdCalibration | None) -> RgbdCalibration | None:
    """The node's calibration, else the one ``map_path``'s map records (None: none known)."""
    map_path = getattr(p, "map_path", "")
    if calib is not None or not map_path:
        return calib
    from mast3r_ros.map.format import MapError, read_meta

    try:
        meta, _ = read_meta(Path(map_path))
    except MapError:
        return None  # the map load that follows names the problem
    stored = meta.extra.get("rgbd_calibration")
    return RgbdCalibration.from_dict(stored) if stored else None


def oracle_model(p: NodeParams, calib: RgbdCalibration | None, image_size: int):
    """The stand-in for ``oracle_dataset`` with every posed frame registered, or None when the
    parameter is ''. Raises ValueError (DatasetError, OracleError) naming a folder that is no dataset."""
    if not p.oracle_dataset:
        return None
    from mast3r_ros.model.oracle import OracleModel, OracleNoise

    return OracleModel.from_dataset(p.oracle_dataset, OracleNoise.parse(p.oracle_noise), None,
                                    oracle_calibration(p, calib), image_size)


def warmup_input(frontend) -> tuple[np.ndarray, np.ndarray]:
    """(image [H,W,3] uint8 RGB, K [3,3]) for a warm-up query: random pixels, or the stand-in's first
    registered frame (it answers nothing else)."""
    model = getattr(frontend, "model", None)
    source = getattr(model, "source", None)
    if source is not None and source.indices:
        ds = source.dataset
        frame = next(f for f in ds.frames() if f.index == source.indices[0])
        K = (source.calib or RgbdCalibration()).colour_K(ds.K)
        return ds.load_rgb(frame), K
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    return image, np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]])
