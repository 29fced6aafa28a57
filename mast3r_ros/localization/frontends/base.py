"""The front-end interface: (query image, keyframe) -> 2D-3D correspondences with confidences.

Two implementations plug in here: the classical RGB-D front-end (SIFT + sensor depth,
``classical.py``) and the MASt3R front-end (dense matching + predicted pointmaps, ``mast3r.py``).
The localizer only talks to the :class:`FrontEnd` protocol, so both share retrieval, PnP,
covariance and the state machine.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from mast3r_ros.map import Keyframe


class FrontEndError(ValueError):
    """A front-end cannot process its input (missing depth, unknown front-end name, ...)."""


@dataclass
class QueryFrame:
    """One query image and its calibration.

    Attributes:
        image: [H,W,3] uint8 RGB.
        K: [3,3] float64 intrinsics of ``image`` (pixel-centre convention, top-left centre (0,0)).
        dist: OpenCV distortion coefficients or None (pixels are undistorted before PnP).
        depth: optional [H,W] float32 depth registered to ``image`` (metres, 0 = invalid).
        stamp: seconds.
        cache: per-query scratch space a front-end fills once (features, descriptors) and
            reuses across keyframes; owned by the front-end, not part of the API.
    """
    image: np.ndarray
    K: np.ndarray
    dist: np.ndarray | None = None
    depth: np.ndarray | None = None
    stamp: float = 0.0
    cache: dict[str, Any] = field(default_factory=dict)


@dataclass
class Correspondences:
    """2D-3D matches between a query image and one keyframe.

    Attributes:
        xy_query: [N,2] float64 query pixels (centre convention, as detected, i.e. distorted
            if the query camera has distortion).
        X_map: [N,3] float64 matched 3D points in the map frame (metres).
        conf: [N] float32 match confidence in [0, 1] (higher is better).
        kf_id: keyframe id the 3D points came from.
        X_cov: optional [N,3,3] float64 map-frame covariances of ``X_map`` (m^2): the 3D points'
            own uncertainty (sensor depth or predicted pointmap; see ``covariance.py``).
    """
    xy_query: np.ndarray
    X_map: np.ndarray
    conf: np.ndarray
    kf_id: int
    X_cov: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.xy_query.shape[0])

    @staticmethod
    def empty(kf_id: int = -1) -> "Correspondences":
        return Correspondences(np.zeros((0, 2)), np.zeros((0, 3)), np.zeros(0, np.float32), kf_id)

    @staticmethod
    def concat(items: list["Correspondences"]) -> tuple["Correspondences", np.ndarray]:
        """Stack several keyframes' matches; also returns [N] int64 keyframe id per match."""
        items = [c for c in items if len(c)]
        if not items:
            return Correspondences.empty(), np.zeros(0, np.int64)
        kf = np.concatenate([np.full(len(c), c.kf_id, np.int64) for c in items])
        covs = [c.X_cov for c in items]
        X_cov = None if any(c is None for c in covs) else np.concatenate(covs)
        return Correspondences(np.concatenate([c.xy_query for c in items]),
                               np.concatenate([c.X_map for c in items]),
                               np.concatenate([c.conf for c in items]).astype(np.float32),
                               items[0].kf_id, X_cov), kf


@runtime_checkable
class FrontEnd(Protocol):
    """What the localizer and the map builder need from a front-end.

    Map build: ``prepare_keyframe`` per keyframe (arrays stored in the map), then
    ``fit_global`` once over all keyframes (e.g. a retrieval vocabulary, stored with
    ``put_global``) and ``keyframe_descriptor`` per keyframe. Localization: ``load_global``
    once, then per query ``prepare_query``, ``query_descriptor`` (retrieval) and ``match`` per
    retrieved keyframe.
    """

    name: str                        # stored in the map's meta; must match at localization
    needs_depth: bool                # keyframes need a depth image (classical) or not (mast3r)
    tracking_keyframes: int          # keyframes matched per query while tracking when the localizer's
                                     # tracking_k is -1 (auto): 0 = retrieval every query
    array_names: tuple[str, ...]     # per-keyframe arrays ``match`` reads from the map
    index_array_names: tuple[str, ...]  # per-keyframe arrays fit_global / keyframe_descriptor read (kept by a build)
    global_names: tuple[str, ...]    # map-level arrays ``load_global`` needs

    def prepare_keyframe(self, image: np.ndarray, K: np.ndarray,
                         depth: np.ndarray | None) -> dict[str, np.ndarray]:
        """Per-keyframe arrays to store in the map (features, 3D points in the keyframe camera)."""

    def fit_global(self, keyframe_arrays: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """Map-wide arrays (e.g. a visual vocabulary) computed once at map build; each dict may hold
        only the ``index_array_names`` of its keyframe."""

    def load_global(self, arrays: dict[str, np.ndarray]) -> None:
        """Install the map-wide arrays returned by ``fit_global`` (from the stored map)."""

    def keyframe_descriptor(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        """[D] float32 unit-norm global descriptor of a keyframe (for retrieval)."""

    def prepare_query(self, query: QueryFrame) -> None:
        """Per-query work shared by retrieval and matching (features, encoder), into query.cache."""

    def query_descriptor(self, query: QueryFrame) -> np.ndarray:
        """[D] float32 unit-norm global descriptor of a query (same space as keyframes')."""

    def match(self, query: QueryFrame, keyframe: Keyframe) -> Correspondences:
        """2D-3D correspondences between the query and one keyframe (X in the map frame)."""
