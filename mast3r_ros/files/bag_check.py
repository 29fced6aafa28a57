"""Checks of a rosbag2 folder before a reader opens it: the file names its ``metadata.yaml`` lists must
stay inside the bag folder (a hostile bag could otherwise make us read any file on disk)."""
from __future__ import annotations

from pathlib import Path

import yaml


def check_bag_folder(path: str | Path) -> Path:
    """The bag folder ``path`` after checking its ``metadata.yaml`` file names (relative, resolving inside
    the folder); ValueError naming the bag and the file otherwise."""
    root = Path(path)
    meta = root / "metadata.yaml"
    if not root.is_dir():
        raise ValueError(f"bag {root} is not a folder (a rosbag2 bag is a folder with metadata.yaml)")
    if not meta.is_file():
        raise ValueError(f"bag {root}: missing {meta.name}")
    try:
        doc = yaml.safe_load(meta.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"bag {meta}: cannot parse it: {' '.join(str(exc).split())}") from None
    info = doc.get("rosbag2_bagfile_information") if isinstance(doc, dict) else None
    if not isinstance(info, dict):
        raise ValueError(f"bag {meta}: no 'rosbag2_bagfile_information' mapping; not a rosbag2 bag")
    names = list(info.get("relative_file_paths") or [])
    names += [f.get("path") for f in (info.get("files") or []) if isinstance(f, dict)]
    inside = root.resolve()
    for name in names:
        if not isinstance(name, str) or not name or Path(name).is_absolute() \
                or inside not in (root / name).resolve().parents:
            raise ValueError(f"bag {meta}: data file {name!r} lies outside the bag folder; refusing the bag")
    return root
