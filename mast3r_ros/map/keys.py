"""Every name under which the map stores an array: keyframe arrays, map-wide (global) arrays and
the ``map.yaml`` extra keys.

Why one module: the map builder writes these names, the localizer, the front-ends, the mapper and
``map check`` read them back; a name typed twice drifts.
"""
from __future__ import annotations

# Keyframe files the store itself writes (image.png, depth.npy); no front-end array may use these names.
RESERVED_NAMES = ("image", "depth")

# Retrieval index (globals), written by map.build.write_index, read by the localizer and the mapping pipeline:
# keyframe ids [N] int64 and one global descriptor per keyframe [N,D] float32, rows in the same order.
RETRIEVAL_IDS = "retrieval_ids"
RETRIEVAL_DESC = "retrieval_desc"

# Classical (SIFT) front-end. Keyframe arrays: sift_xy [N,2] float32 pixels, sift_desc [N,128] uint8,
# sift_X [N,3] float32 camera-frame points in metres (NaN = keypoint without depth). Global: VLAD vocabulary.
CLASSICAL_ARRAYS = ("sift_xy", "sift_desc", "sift_X")
CLASSICAL_VOCAB = "classical_vocab"

# MASt3R front-end. Keyframe arrays (see localization.frontends.mast3r); global: the checkpoint's sha256 bytes.
MAST3R_ARRAYS = ("mast3r_tokens", "mast3r_tf", "mast3r_global", "mast3r_X")
MAST3R_CHECKPOINT = "mast3r_checkpoint"

# map.yaml ``extra`` key set while `map build` runs, removed when it finishes (a map with it is partial).
PARTIAL_KEY = "incomplete"
