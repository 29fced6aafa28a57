"""Keyframe retrieval without learned weights: VLAD over local descriptors + cosine top-k.

Why VLAD: a 64-word vocabulary fitted at map build (k-means on the map's own descriptors,
stored with ``put_global``) is enough for a room-sized map, needs no extra download, and
aggregates residuals so that it separates nearby viewpoints better than plain bag-of-words.
An optional pose prior (the last accepted pose) gates out keyframes that cannot be visible.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mast3r_ros.config_fields import setting


@dataclass
class RetrievalConfig:
    """Retrieval parameters.

    top_k: keyframes returned per query by descriptor retrieval (no prior, or a relocalization request).
    tracking_k: keyframes matched per query while tracking: the ones nearest the pose prior, no
        descriptor retrieval (which runs while not tracking and after a ``localize`` request).
        0 = off: descriptor retrieval for every query. -1 (default) = the front-end's choice
        (``tracking_keyframes``): 1 for MASt3R, where a keyframe costs a decoder pass
        (``bench_localization.py``), 0 for the classical front-end, whose matching costs milliseconds.
    tracking_retry: a query that the tracking keyframes fail (a gate, too few matches) is retried at
        once with descriptor retrieval (its keyframes already matched are not matched again), so
        tracking never loses a fix that retrieval finds; False bounds each query's time to one
        matching pass (the next query retries while the state still has a prior).
    tracking_angle_weight_m: how "near the prior" is measured for ``tracking_k``: camera-centre
        distance plus this many metres per radian between the optical axes, so the keyframe chosen
        looks where the camera looks (about the scene's depth: a turn of 1 rad moves what a camera
        2 m from the scene sees by ~2 m). 0 = centre distance only. 7-Scenes temporal split,
        classical front-end, tracking_k=1, RGB queries 600:1000:18: 20 of 23 answered from the
        keyframe so chosen, 14 with 0 m/rad (``test_localization_7scenes.py``).
    prior_max_dist_m / prior_max_angle_deg: with a pose prior, keyframes whose camera centre is
        farther / whose optical axis differs more than this are excluded (None = no gate).
    """
    top_k: int = setting(5, "keyframes retrieved per query", min=1, max=100)
    tracking_k: int = setting(-1, "keyframes matched per query while tracking (0: retrieval every query; "
                              "-1: the front-end's choice, mast3r 1, classical 0)", min=-1, max=100)
    tracking_retry: bool = setting(True, "a query the tracking keyframes fail is retried with retrieval")
    tracking_angle_weight_m: float = setting(2.0, "tracking keyframe choice: metres per radian between optical axes",
                                             min=0.0, max=100.0)
    prior_max_dist_m: float | None = 1.5
    prior_max_angle_deg: float | None = 75.0


def fit_vocabulary(descriptors: np.ndarray, n_words: int = 64, seed: int = 0,
                   max_train: int = 100_000) -> np.ndarray:
    """k-means vocabulary for VLAD.

    Args:
        descriptors: [N,D] float32 local descriptors (e.g. RootSIFT, unit norm).
        n_words: number of cluster centres (reduced if there are few descriptors).
        seed: RNG seed (the vocabulary is deterministic for a given map).
        max_train: subsample size for k-means.
    Returns:
        [n_words, D] float32 cluster centres.
    """
    import faiss

    X = np.ascontiguousarray(descriptors, dtype=np.float32)
    if len(X) == 0:
        raise ValueError("cannot fit a retrieval vocabulary: the map has no local descriptors")
    rng = np.random.default_rng(seed)
    if len(X) > max_train:
        X = X[rng.choice(len(X), max_train, replace=False)]
    k = int(max(1, min(n_words, len(X) // 40)))
    km = faiss.Kmeans(X.shape[1], k, niter=20, seed=seed, verbose=False, spherical=False)
    km.train(X)
    return np.asarray(km.centroids, dtype=np.float32)


def vlad(descriptors: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Intra- and power-normalised VLAD vector.

    Args:
        descriptors: [N,D] float32 local descriptors.
        centres: [K,D] float32 vocabulary.
    Returns:
        [K*D] float32 unit-norm descriptor (all zeros when ``descriptors`` is empty).
    """
    Kc, D = centres.shape
    out = np.zeros((Kc, D), dtype=np.float32)
    X = np.asarray(descriptors, dtype=np.float32).reshape(-1, D)
    if len(X):
        d2 = (X * X).sum(1)[:, None] - 2.0 * X @ centres.T + (centres * centres).sum(1)[None]
        assign = np.argmin(d2, axis=1)
        np.add.at(out, assign, X - centres[assign])
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        out = np.where(norms > 0, out / np.maximum(norms, 1e-12), 0.0)
    v = out.ravel()
    v = np.sign(v) * np.sqrt(np.abs(v))
    n = np.linalg.norm(v)
    return (v / n if n > 0 else v).astype(np.float32)


class Retriever:
    """Cosine-similarity top-k over keyframe global descriptors, optionally pose-gated.

    Args:
        kf_ids: keyframe ids, one per row of ``descriptors``.
        descriptors: [M,D] float32 unit-norm global descriptors.
        T_map_cam: [M,4,4] float64 keyframe poses (camera-to-map), for the prior gate.
        config: :class:`RetrievalConfig`.
    """

    def __init__(self, kf_ids: list[int], descriptors: np.ndarray, T_map_cam: np.ndarray,
                 config: RetrievalConfig | None = None):
        self.kf_ids = np.asarray(kf_ids, dtype=np.int64)
        self.desc = np.asarray(descriptors, dtype=np.float32)
        self.T = np.asarray(T_map_cam, dtype=np.float64).reshape(-1, 4, 4)
        self.config = config or RetrievalConfig()
        if not (len(self.kf_ids) == len(self.desc) == len(self.T)):
            raise ValueError("kf_ids, descriptors and poses must have the same length")

    def query(self, descriptor: np.ndarray, prior_T_map_cam: np.ndarray | None = None,
              top_k: int | None = None) -> tuple[list[int], np.ndarray]:
        """Best keyframes for a query descriptor [D].

        Returns:
            (keyframe ids best first, [k] float32 cosine similarities). If the prior gate
            excludes every keyframe the gate is ignored (a bad prior must not blind us).
        """
        k = top_k or self.config.top_k
        if len(self.kf_ids) == 0:
            return [], np.zeros(0, np.float32)
        sims = self.desc @ np.asarray(descriptor, dtype=np.float32).reshape(-1)
        allowed = self._gate(prior_T_map_cam)
        if allowed is not None and allowed.any():
            sims = np.where(allowed, sims, -np.inf)
        order = np.argsort(-sims, kind="stable")[:k]
        order = order[np.isfinite(sims[order])]
        return self.kf_ids[order].tolist(), sims[order].astype(np.float32)

    def nearest(self, prior_T_map_cam: np.ndarray, k: int | None = None) -> list[int]:
        """The ``k`` (default ``tracking_k``) keyframes nearest the prior's view: camera-centre
        distance + ``tracking_angle_weight_m`` x the angle between optical axes, among those the prior
        gate keeps (all keyframes when it keeps none). Nearest first."""
        k = k or self.config.tracking_k
        if k < 1:
            raise ValueError(f"nearest needs k >= 1, got {k} (the Localizer resolves tracking_k -1 from its front-end)")
        if len(self.kf_ids) == 0:
            return []
        cos = np.clip(self.T[:, :3, 2] @ prior_T_map_cam[:3, 2], -1.0, 1.0)
        score = (np.linalg.norm(self.T[:, :3, 3] - prior_T_map_cam[:3, 3], axis=1)
                 + self.config.tracking_angle_weight_m * np.arccos(cos))
        allowed = self._gate(prior_T_map_cam)
        if allowed is not None and allowed.any():
            score = np.where(allowed, score, np.inf)
        order = np.argsort(score, kind="stable")[:k]
        return self.kf_ids[order].tolist()

    def _gate(self, prior: np.ndarray | None) -> np.ndarray | None:
        cfg = self.config
        if prior is None:
            return None
        ok = np.ones(len(self.T), dtype=bool)
        if cfg.prior_max_dist_m is not None:
            ok &= np.linalg.norm(self.T[:, :3, 3] - prior[:3, 3], axis=1) <= cfg.prior_max_dist_m
        if cfg.prior_max_angle_deg is not None:
            cosang = self.T[:, :3, 2] @ prior[:3, 2]
            ok &= cosang >= np.cos(np.radians(cfg.prior_max_angle_deg))
        return ok
