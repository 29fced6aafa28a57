"""Build a keyframe map from a posed RGB-D dataset (keyframe poses = the dataset's poses)."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from mast3r_ros.datasets.calibration import RgbdCalibration
from mast3r_ros.datasets.readers import FrameSpec, RgbdDataset
from mast3r_ros.localization.frontends import FrontEnd, FrontEndError
from mast3r_ros.map.format import Keyframe, MapMeta
from mast3r_ros.map.keys import RETRIEVAL_DESC, RETRIEVAL_IDS
from mast3r_ros.map.store import KeyframeMap


def build_map(dataset: RgbdDataset, spec: FrameSpec | str, frontend: FrontEnd, out: str | Path,
              overwrite: bool = False, store_depth: bool = False,
              checkpoint_sha256: str | None = None, progress: bool = False,
              calib: RgbdCalibration | None = None, use_depth: bool = True) -> Path:
    """Create a map at ``out`` from the frames of ``dataset`` selected by ``spec``.

    Each keyframe stores its image, K, the dataset pose as ``T_map_cam`` (the dataset's world
    frame becomes the map frame), the front-end arrays and (optionally) depth; then the
    front-end's map-level arrays (retrieval vocabulary) and the retrieval index are stored.
    With an :class:`RgbdCalibration`, depth is first registered to the colour image and the
    keyframe pose is that of the colour camera (``T_world_cam @ T_pose_rgb``). ``use_depth=False``
    builds from the images alone (no depth read, given to the front-end or stored).

    Raises:
        FrontEndError / DatasetError / MapError with a message naming the bad frame or file.
    """
    if not use_depth and frontend.needs_depth:
        raise FrontEndError(f"the {frontend.name} front-end needs keyframe depth: build without depth only with "
                            "the mast3r front-end")
    frames = [f for f in dataset.frames(spec) if f.T_world_cam is not None]
    if not frames:
        raise FrontEndError(f"no frames with ground-truth poses in {dataset.root} for spec {spec}")
    calib = calib or RgbdCalibration()
    K = calib.colour_K(dataset.K)
    checkpoint_sha256 = checkpoint_sha256 or getattr(frontend, "checkpoint_sha256", None)
    meta = MapMeta(frontend=frontend.name, checkpoint_sha256=checkpoint_sha256,
                   image_size=tuple(dataset.image_size),
                   extra={"dataset": str(dataset.root), "frames": str(spec),
                          "rgbd_calibration": calib.to_dict()})
    with KeyframeMap.create(out, meta, overwrite=overwrite) as kmap:
        # until the index is written the map is partial: if the build stops, opening it says so
        kmap.set_partial(f"`map build` stopped before finishing ({len(frames)} keyframes planned)")
        index_arrays = []  # only what the index needs: a large map's tokens / features are not all held at once
        for frame in _progress(frames, progress, "map build"):
            image = dataset.load_rgb(frame)
            depth = (calib.depth_in_colour(dataset.load_depth(frame), dataset.K, dataset.image_size)
                     if use_depth else None)
            if depth is None and frontend.needs_depth:
                raise FrontEndError(f"frame {frame.index} ({frame.rgb_path}) has no depth image; "
                                    f"the {frontend.name} front-end needs depth for keyframes")
            arrays = frontend.prepare_keyframe(image, K, depth)
            kmap.add_keyframe(Keyframe(None, frame.index, frame.timestamp, image, K,
                                       calib.colour_pose(frame.T_world_cam),
                                       depth if store_depth else None, arrays))
            index_arrays.append({n: arrays[n] for n in frontend.index_array_names})
        write_index(kmap, frontend, index_arrays)
        kmap.set_partial(None)
    return Path(out)


def write_index(kmap: KeyframeMap, frontend: FrontEnd, keyframe_arrays: list[dict]) -> None:
    """Finish a map: the front-end's map-wide arrays (e.g. retrieval vocabulary), one retrieval
    descriptor per keyframe (``keyframe_arrays`` in ``kmap.keyframe_ids()`` order, each holding at
    least the front-end's ``index_array_names``) and
    ``trajectory_tum.txt``; what the localizer needs to open the map."""
    for name, arr in frontend.fit_global(keyframe_arrays).items():
        kmap.put_global(name, arr)
    desc = np.stack([frontend.keyframe_descriptor(a) for a in keyframe_arrays]).astype(np.float32)
    kmap.put_global(RETRIEVAL_IDS, np.asarray(kmap.keyframe_ids(), dtype=np.int64))
    kmap.put_global(RETRIEVAL_DESC, desc)
    kmap.write_trajectory_tum()


def _progress(items: list, enabled: bool, desc: str) -> Iterable:
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="frame")
