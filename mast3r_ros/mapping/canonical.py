"""Canonical views, focal estimation and the anchor grid.

Every view can receive several pointmaps of itself (one per pair it appears first in, plus an
optional sensor depth prior). They are fused into one *canonical* pointmap by a confidence
weighted average. The local shape inside each ``subsample`` x ``subsample`` block is then
fixed as a multiplicative depth offset w.r.t. the block's centre pixel (the *anchor*): the
optimiser only moves anchor depths, each pixel follows its anchor (paper, sparse global
alignment). In ``'avg-angle'`` mode the offsets average, over the predictions, the angle
``atan(dz / r)`` of the depth step seen from the anchor rather than the raw depth ratio: the
predictions of one view from different pairs differ mostly by a scale, and that angle is the
same for every scaled copy, so averaging it does not blur the local shape.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from mast3r_ros.mapping.types import MappingError

MODES = ("avg-angle", "avg-reldepth")


@dataclass
class CanonicalView:
    """Fused geometry of one view.

    Attributes:
        points: [H,W,3] float32 fused pointmap in the view's camera (metres, NaN = invalid).
        conf: [H,W] float32 fused confidence (0 = invalid).
        offsets: [H,W] float32 depth of each pixel divided by its anchor's depth (0 = invalid).
        anchor_depth: [Ha,Wa] float32 initial anchor depths (metres, 0 = no anchor),
            Ha = ceil(H / subsample), Wa = ceil(W / subsample).
        subsample: anchor spacing (pixels).
    """
    points: np.ndarray
    conf: np.ndarray
    offsets: np.ndarray
    anchor_depth: np.ndarray
    subsample: int

    @cached_property
    def depth(self) -> np.ndarray:
        """[H,W] float32 depth implied by the initial anchors and offsets (metres, 0 = invalid)."""
        s = self.subsample
        H, W = self.offsets.shape
        up = np.repeat(np.repeat(self.anchor_depth, s, 0), s, 1)[:H, :W]
        return (up * self.offsets).astype(np.float32)


def _blocks(a: np.ndarray, s: int) -> np.ndarray:
    """[K,Hp,Wp,...] -> [K,Ha,Wa,s*s,...] (row-major pixels inside each block)."""
    K, Hp, Wp = a.shape[:3]
    rest = a.shape[3:]
    b = a.reshape(K, Hp // s, s, Wp // s, s, *rest)
    b = np.moveaxis(b, 3, 2)  # K, Ha, Wa, s, s, ...
    return b.reshape(K, Hp // s, Wp // s, s * s, *rest)


def _unblocks(b: np.ndarray, s: int) -> np.ndarray:
    """Inverse of :func:`_blocks` for [Ha,Wa,s*s] -> [Hp,Wp]."""
    Ha, Wa = b.shape[:2]
    return np.moveaxis(b.reshape(Ha, Wa, s, s), 2, 1).reshape(Ha * s, Wa * s)


def fuse_view(pointmaps: list[np.ndarray], confs: list[np.ndarray], subsample: int = 8,
              mode: str = "avg-angle") -> CanonicalView:
    """Fuse the pointmaps of one view and build its anchors.

    Args:
        pointmaps: K arrays [H,W,3] float32, the view's points in its own camera (metres).
        confs: K arrays [H,W] float32 confidences (>= 1 for MASt3R; <= 0.999 or NaN = invalid).
        subsample: anchor grid spacing in pixels (8 in the paper).
        mode: 'avg-angle' (paper default) or 'avg-reldepth' (average of depth ratios).
    """
    if mode not in MODES:
        raise MappingError(f"canonical mode must be one of {MODES}, got {mode!r}")
    if not pointmaps:
        raise MappingError("a view has no pointmap (no depth prior and no pair with X_ii)")
    P = np.stack([np.asarray(p, np.float32) for p in pointmaps])
    C = np.stack([np.asarray(c, np.float32) for c in confs])
    K, H, W = C.shape
    valid = np.isfinite(P).all(-1) & (P[..., 2] > 0) & np.isfinite(C) & (C > 0.999)
    w = np.where(valid, C - 0.999, 0.0).astype(np.float32)
    P = np.where(valid[..., None], P, 0.0)
    wsum = w.sum(0)
    ok = wsum > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        canon = (w[..., None] * P).sum(0) / wsum[..., None]
        conf = np.where(ok, (w * C).sum(0) / np.maximum(wsum, 1e-12), 0.0)
    canon[~ok] = np.nan
    s = int(subsample)
    Hp, Wp = -(-H // s) * s, -(-W // s) * s
    pad = ((0, 0), (0, Hp - H), (0, Wp - W))
    Pb = _blocks(np.pad(P, pad + ((0, 0),)), s)             # K,Ha,Wa,s*s,3
    wb = _blocks(np.pad(w, pad), s)                         # K,Ha,Wa,s*s
    zc_canon = _blocks(np.pad(np.where(ok, canon[..., 2], 0.0)[None], pad), s)[0]  # Ha,Wa,s*s
    centre = (s // 2) * s + s // 2
    # anchor depth: the fused centre pixel, else the block's mean valid depth (sensor holes)
    z_centre = zc_canon[:, :, centre]
    nvalid = (zc_canon > 0).sum(-1)
    z_med = np.where(nvalid > 0, zc_canon.sum(-1) / np.maximum(nvalid, 1), 0.0)
    centre_ok = z_centre > 0
    anchor = np.where(centre_ok, z_centre, z_med).astype(np.float32)
    # offsets: ratio to the anchor (single prediction / fallback), or averaged angles
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where((zc_canon > 0) & (anchor[..., None] > 0), zc_canon / anchor[..., None], 0.0)
    offsets_b = ratio
    if mode == "avg-angle" and K > 1:
        zb, xyb = Pb[..., 2], Pb[..., :2]
        wc = wb[:, :, :, centre:centre + 1] > 0
        wa = wb * wc                                        # needs a valid centre in that prediction
        r = np.linalg.norm(xyb - xyb[:, :, :, centre:centre + 1], axis=-1)
        r = np.maximum(r, 1e-8)
        ang = np.arctan((zb - zb[:, :, :, centre:centre + 1]) / r)
        wsum_a = wa.sum(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_ang = (wa * ang).sum(0) / wsum_a
            mean_r = (wa * r).sum(0) / wsum_a
            off = 1.0 + mean_r * np.tan(mean_ang) / anchor[..., None]
        use = centre_ok[..., None] & (wsum_a > 0) & (zc_canon > 0) & np.isfinite(off) & (off > 0)
        offsets_b = np.where(use, off, ratio)
    offsets = _unblocks(offsets_b.astype(np.float32), s)[:H, :W]
    return CanonicalView(canon.astype(np.float32), conf.astype(np.float32), offsets,
                         anchor, s)


def estimate_focal(points: np.ndarray, conf: np.ndarray | None = None,
                   pp: tuple[float, float] | None = None, iterations: int = 10) -> float:
    """Focal length (pixels) that best re-projects a camera-frame pointmap onto its pixel grid.

    Minimises ``sum_p w_p || (u,v)_p - pp - f (X/Z, Y/Z)_p ||`` (an L1-type, outlier tolerant
    cost) by iteratively reweighted least squares (Weiszfeld), starting from the L2 solution.

    Args:
        points: [H,W,3] float camera-frame points (metres), NaN / z <= 0 = invalid.
        conf: optional [H,W] weights.
        pp: principal point (cx, cy); default the image centre ((W-1)/2, (H-1)/2).
    """
    H, W = points.shape[:2]
    cx, cy = pp if pp is not None else ((W - 1) / 2.0, (H - 1) / 2.0)
    v, u = np.mgrid[0:H, 0:W]
    P = points.reshape(-1, 3).astype(np.float64)
    w = np.ones(H * W) if conf is None else np.asarray(conf, np.float64).reshape(-1)
    ok = np.isfinite(P).all(1) & (P[:, 2] > 1e-6) & (w > 0)
    if ok.sum() < 10:
        raise MappingError("cannot estimate the focal length: fewer than 10 valid points")
    x = P[ok, :2] / P[ok, 2:3]
    p = np.stack([u.reshape(-1)[ok] - cx, v.reshape(-1)[ok] - cy], 1)
    w = w[ok]
    f = float(np.sum(w[:, None] * p * x) / np.sum(w[:, None] * x * x))
    for _ in range(iterations):
        res = np.linalg.norm(p - f * x, axis=1)
        ww = w / np.maximum(res, 1e-3)
        f = float(np.sum(ww[:, None] * p * x) / np.sum(ww[:, None] * x * x))
    if not np.isfinite(f) or f <= 0:
        raise MappingError(f"focal estimate is not positive ({f})")
    return f
