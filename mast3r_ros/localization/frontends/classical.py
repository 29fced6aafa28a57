"""Classical RGB-D front-end: OpenCV SIFT (RootSIFT) + mutual-NN/ratio matching + sensor depth.

The CPU-only, no-checkpoint fallback and the paper's baseline. Keyframe features and their 3D
points (keyframe camera frame, from the depth image) are computed once at map build and stored
as keyframe arrays; a query only runs SIFT once and matches against the retrieved keyframes.

Stored keyframe arrays (names are part of the map format):
    sift_xy   [N,2] float32 keypoint pixels (centre convention)
    sift_desc [N,128] uint8 raw SIFT descriptors (RootSIFT is recomputed on load)
    sift_X    [N,3] float32 keyframe-camera-frame points (metres), NaN where depth is unusable
Map global: ``classical_vocab`` [K,128] float32 VLAD vocabulary.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from mast3r_ros.geometry.camera import backproject_depth, check_intrinsics, sample_depth_robust
from mast3r_ros.geometry.transforms import transform_points
from mast3r_ros.localization.covariance import depth_point_covariance, rotate_covariance
from mast3r_ros.localization.frontends.base import Correspondences, FrontEndError, QueryFrame
from mast3r_ros.localization.retrieval import fit_vocabulary, vlad
from mast3r_ros.map import Keyframe
from mast3r_ros.map.keys import CLASSICAL_ARRAYS, CLASSICAL_VOCAB


@dataclass
class ClassicalConfig:
    """Classical front-end parameters.

    max_features: SIFT keypoints kept per image (strongest first).
    ratio: Lowe ratio threshold on descriptor distances (best / second best).
    mutual: keep only mutual nearest neighbours.
    depth_max_spread_m: reject a keypoint when its 3x3 depth neighbourhood spans more than this
        (depth is not registered to RGB on Kinect data, so edges give wrong depths).
    depth_min_m / depth_max_m: valid depth range.
    vocab_words: VLAD vocabulary size.
    """
    max_features: int = 2000
    ratio: float = 0.85
    mutual: bool = True
    depth_max_spread_m: float = 0.05
    depth_min_m: float = 0.1
    depth_max_m: float = 8.0
    vocab_words: int = 64


def root_sift(desc: np.ndarray) -> np.ndarray:
    """RootSIFT ([N,128] any numeric -> [N,128] float32 unit L2 norm): Hellinger-kernel SIFT."""
    d = np.asarray(desc, dtype=np.float32)
    d = d / np.maximum(d.sum(axis=1, keepdims=True), 1e-12)
    return np.sqrt(d)


def detect_sift(image: np.ndarray, max_features: int) -> tuple[np.ndarray, np.ndarray]:
    """SIFT on an RGB image -> (xy [N,2] float32 pixels, desc [N,128] uint8)."""
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise FrontEndError(f"image must be [H,W,3] uint8 RGB, got {img.shape} {img.dtype}")
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    sift = cv2.SIFT_create(nfeatures=max_features)
    kps, desc = sift.detectAndCompute(gray, None)
    if desc is None or not kps:
        return np.zeros((0, 2), np.float32), np.zeros((0, 128), np.uint8)
    xy = np.array([k.pt for k in kps], dtype=np.float32)
    return xy, np.clip(np.rint(desc), 0, 255).astype(np.uint8)


def sample_depth(depth: np.ndarray, xy: np.ndarray, cfg: ClassicalConfig) -> np.ndarray:
    """Robust keypoint depth ([N] metres, NaN where unreliable); see ``sample_depth_robust``."""
    return sample_depth_robust(depth, xy, cfg.depth_max_spread_m, cfg.depth_min_m, cfg.depth_max_m)


def mutual_ratio_match(q: np.ndarray, k: np.ndarray, ratio: float, mutual: bool
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Match unit-norm descriptors q [Nq,D] to k [Nk,D].

    Returns:
        (query indices [M], keyframe indices [M], ratio [M] float32 best/second distance).
    """
    if len(q) == 0 or len(k) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    sim = q @ k.T
    rows = np.arange(len(q))
    best = np.argmax(sim, axis=1)
    s_best = sim[rows, best]
    sim[rows, best] = -np.inf
    s_second = sim[rows, np.argmax(sim, axis=1)]
    sim[rows, best] = s_best
    d1 = np.sqrt(np.maximum(2.0 - 2.0 * s_best, 0.0))
    d2 = np.sqrt(np.maximum(2.0 - 2.0 * s_second, 0.0))
    r = d1 / np.maximum(d2, 1e-12)
    keep = r < ratio
    if mutual:
        keep &= np.argmax(sim, axis=0)[best] == np.arange(len(q))
    qi = np.flatnonzero(keep)
    return qi, best[qi], r[qi].astype(np.float32)


class ClassicalFrontEnd:
    """SIFT + depth front-end implementing :class:`~mast3r_ros.localization.frontends.base.FrontEnd`."""

    name = "classical"
    needs_depth = True
    # matching a keyframe costs milliseconds, and the top-5 retrieved keyframes give more matches than
    # the one nearest the prior (7-Scenes interleaved split: 0.45 vs 0.68 cm median): retrieval every query
    tracking_keyframes = 0
    array_names = CLASSICAL_ARRAYS
    index_array_names = ("sift_desc",)
    global_names = (CLASSICAL_VOCAB,)

    def __init__(self, config: ClassicalConfig | None = None):
        self.config = config or ClassicalConfig()
        self._vocab: np.ndarray | None = None

    # ------------------------------------------------------------------ map build
    def prepare_keyframe(self, image: np.ndarray, K: np.ndarray,
                         depth: np.ndarray | None) -> dict[str, np.ndarray]:
        """SIFT keypoints/descriptors and their keyframe-camera 3D points (see module doc)."""
        K = check_intrinsics(K)
        if depth is None:
            raise FrontEndError("the classical front-end needs a depth image for every keyframe")
        depth = np.asarray(depth, dtype=np.float32)
        if depth.shape != image.shape[:2]:
            raise FrontEndError(f"depth shape {depth.shape} does not match image {image.shape[:2]}")
        xy, desc = detect_sift(image, self.config.max_features)
        z = sample_depth(depth, xy.astype(np.float64), self.config)
        X = backproject_depth(K, xy, z).astype(np.float32)
        return {"sift_xy": xy, "sift_desc": desc, "sift_X": X}

    def fit_global(self, keyframe_arrays: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """Fit the VLAD vocabulary on all keyframe descriptors."""
        descs = [root_sift(a["sift_desc"]) for a in keyframe_arrays if len(a["sift_desc"])]
        if not descs:
            raise FrontEndError("no SIFT features in any keyframe; cannot build retrieval vocabulary")
        vocab = fit_vocabulary(np.concatenate(descs), self.config.vocab_words)
        self._vocab = vocab
        return {CLASSICAL_VOCAB: vocab}

    def load_global(self, arrays: dict[str, np.ndarray]) -> None:
        vocab = arrays.get(CLASSICAL_VOCAB)
        if vocab is None:
            raise FrontEndError(f"map has no '{CLASSICAL_VOCAB}' global array (built with another front-end?)")
        self._vocab = np.asarray(vocab, dtype=np.float32)

    @property
    def vocabulary(self) -> np.ndarray | None:
        """[W,128] float32 VLAD vocabulary in use (a new array whenever it is fitted or set), or None."""
        return self._vocab

    def set_vocabulary(self, vocab: np.ndarray | None) -> None:
        """Use ``vocab`` [W,128] float32 for retrieval descriptors (None: none until fitted)."""
        self._vocab = None if vocab is None else np.asarray(vocab, dtype=np.float32)

    def keyframe_descriptor(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        return vlad(root_sift(arrays["sift_desc"]), self._require_vocab())

    def _require_vocab(self) -> np.ndarray:
        if self._vocab is None:
            raise FrontEndError("retrieval vocabulary not loaded: call fit_global or load_global first")
        return self._vocab

    # ------------------------------------------------------------------ query
    def _query_features(self, query: QueryFrame) -> tuple[np.ndarray, np.ndarray]:
        """(xy [N,2] float64, RootSIFT [N,128] float32) of the query, computed once."""
        if "sift" not in query.cache:
            xy, desc = detect_sift(query.image, self.config.max_features)
            query.cache["sift"] = (xy.astype(np.float64), root_sift(desc))
        return query.cache["sift"]

    def prepare_query(self, query: QueryFrame) -> None:
        """Detect the query's SIFT features once (cached in ``query.cache``)."""
        self._query_features(query)

    def query_descriptor(self, query: QueryFrame) -> np.ndarray:
        return vlad(self._query_features(query)[1], self._require_vocab())

    def match(self, query: QueryFrame, keyframe: Keyframe) -> Correspondences:
        """Mutual-NN + ratio matches whose keyframe keypoint has a reliable depth.

        ``conf`` = 1 - (distance ratio): 0 at the ratio threshold's limit of 1, higher = more
        distinctive. X_map = keyframe.T_map_cam applied to the stored camera-frame point; X_cov
        its sensor-depth covariance (``covariance.depth_point_covariance``, default noise model).
        """
        arr = keyframe.arrays
        missing = [n for n in CLASSICAL_ARRAYS if n not in arr]
        if missing:
            raise FrontEndError(f"keyframe {keyframe.id} lacks classical arrays {missing}")
        q_xy, q_desc = self._query_features(query)
        X_kf = np.asarray(arr["sift_X"], dtype=np.float64)
        has3d = np.all(np.isfinite(X_kf), axis=1)
        qi, ki, r = mutual_ratio_match(q_desc, self._kf_desc(keyframe), self.config.ratio,
                                       self.config.mutual)
        keep = has3d[ki]
        qi, ki, r = qi[keep], ki[keep], r[keep]
        X_map = transform_points(keyframe.T_map_cam, X_kf[ki])
        X_cov = rotate_covariance(keyframe.T_map_cam[:3, :3], depth_point_covariance(X_kf[ki], keyframe.K))
        return Correspondences(q_xy[qi], X_map, (1.0 - r).astype(np.float32), int(keyframe.id), X_cov)

    @staticmethod
    def _kf_desc(keyframe: Keyframe) -> np.ndarray:
        """RootSIFT of a keyframe, cached in its arrays dict (keyframes are cached by the localizer)."""
        if "_rootsift" not in keyframe.arrays:
            keyframe.arrays["_rootsift"] = root_sift(keyframe.arrays["sift_desc"])
        return keyframe.arrays["_rootsift"]
