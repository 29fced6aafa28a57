"""Coarse-to-fine matching of two full-resolution images (MASt3R paper section 3.4).

Pipeline: (1) both images resized to their 512-px working resolution and matched (coarse pass);
(2) crop pairs selected from the coarse matches (``select_crop_pairs``); (3) the crops, at the working
resolution, are run through the network in batches; (4) each crop pair is matched and the matches are
mapped back to full-resolution pixels, concatenated and de-duplicated.

The network is injected as a callable so this module does not depend on the model code::

    infer(imgs_q: Tensor[B, 3, h_q, w_q], imgs_ref: Tensor[B, 3, h_r, w_r])
        -> (desc_q [B, h_q, w_q, D], conf_q [B, h_q, w_q], desc_ref [B, h_r, w_r, D], conf_ref [B, h_r, w_r])

Images given to ``infer`` are float32 RGB normalised to [-1, 1] as ``(u8 / 255 - 0.5) / 0.5``; outputs
may be torch or numpy. All crops of one image share its working resolution, so they batch.

Pixel convention: integer pixel centres. A pixel (x, y) of a w x h resized version of the box
(x0, y0, x1, y1) (size cw x ch) maps to full resolution as
``x_full = x0 + (x + 0.5) * cw / w - 0.5`` (same for y), rounded to the nearest integer pixel for the
returned matches. With forced working resolution the fine crops are already w x h (no resizing; the
mapping is an integer shift); only the coarse pass (whole image) is rescaled.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from .config import MatchingConfig
from .crops import Box, crop_slice, select_crop_pairs, working_resolution
from .frm import merge_pairs
from .symmetric import match_symmetric, uniform_thinning

InferFn = Callable[[torch.Tensor, torch.Tensor], Sequence]


@dataclass(frozen=True)
class CoarseToFineConfig:
    """maxdim: network working size (long side); overlap: crop-grid overlap; batch_size: crop pairs per
    ``infer`` call; matching: FRM/symmetric options used at both levels (its max_matches is applied once,
    to the final full-resolution matches)."""

    maxdim: int = 512
    overlap: float = 0.5
    batch_size: int = 4
    matching: MatchingConfig = field(default_factory=MatchingConfig)

    def __post_init__(self) -> None:
        if self.maxdim != 512:
            raise ValueError(f"maxdim must be 512 (the only working-resolution table), got {self.maxdim}")
        if not 0 <= self.overlap < 1:
            raise ValueError(f"overlap must be in [0, 1), got {self.overlap}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")


def _check_image(img: np.ndarray, name: str) -> np.ndarray:
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"{name} must be a uint8 RGB array [H, W, 3], got "
                         f"{getattr(img, 'dtype', type(img).__name__)} {getattr(img, 'shape', '')}")
    if img.shape[0] == 0 or img.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {img.shape}")
    return img


def resize_rgb(img: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """uint8 [H, W, 3] -> uint8 [h, w, 3]; PIL LANCZOS when shrinking, BICUBIC when enlarging."""
    h, w = hw
    if img.shape[:2] == (h, w):
        return img
    shrink = h <= img.shape[0] and w <= img.shape[1]
    pil = Image.fromarray(np.ascontiguousarray(img))
    return np.asarray(pil.resize((w, h), Image.LANCZOS if shrink else Image.BICUBIC))


def normalize_rgb(imgs: Sequence[np.ndarray]) -> torch.Tensor:
    """uint8 [h, w, 3] images (same size) -> float32 [B, 3, h, w] in [-1, 1]: (u8 / 255 - 0.5) / 0.5."""
    t = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255.0
    return (t - 0.5) / 0.5


def map_to_full(xy: np.ndarray, box: Box, hw: tuple[int, int]) -> np.ndarray:
    """(x, y) pixels of a box resized to hw = (h, w) -> continuous full-resolution float64 [N, 2]."""
    x0, y0, x1, y1 = box
    h, w = hw
    sx, sy = (x1 - x0) / w, (y1 - y0) / h
    return np.stack([x0 + (xy[:, 0] + 0.5) * sx - 0.5, y0 + (xy[:, 1] + 0.5) * sy - 0.5], axis=1)


def _run_infer(infer: InferFn, tq: torch.Tensor, tr: torch.Tensor):
    out = infer(tq, tr)
    if not isinstance(out, (tuple, list)) or len(out) != 4:
        raise ValueError("infer must return (desc_q, conf_q, desc_ref, conf_ref)")
    dq, cq, dr, cr = out
    B = tq.shape[0]
    for name, d, c, (h, w) in (("q", dq, cq, tq.shape[2:]), ("ref", dr, cr, tr.shape[2:])):
        if tuple(d.shape[:3]) != (B, h, w) or d.ndim != 4 or tuple(c.shape) != (B, h, w):
            raise ValueError(f"infer output for {name}: expected desc [{B}, {h}, {w}, D] and conf [{B}, {h}, {w}], "
                             f"got {tuple(d.shape)} and {tuple(c.shape)}")
    return dq, cq, dr, cr


def _round_inside(xy: np.ndarray, H: int, W: int) -> np.ndarray:
    out = np.rint(xy).astype(np.int64)
    out[:, 0] = out[:, 0].clip(0, W - 1)
    out[:, 1] = out[:, 1].clip(0, H - 1)
    return out


def coarse_to_fine_match(img_q: np.ndarray, img_ref: np.ndarray, infer: InferFn,
                         config: CoarseToFineConfig | None = None
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Full-resolution matches between two RGB images via coarse matching + crop-pair fine matching.

    img_q, img_ref: uint8 [H, W, 3] RGB full-resolution images.
    infer: the network callable (module docstring).
    Returns xy_q int64 [N, 2], xy_ref int64 [N, 2] (x, y) full-resolution pixel centres, conf float32 [N]
    (min of the two descriptor confidences; the max over crop pairs for duplicates), sorted by the
    flat index in img_q then img_ref. When an image is smaller than its working resolution the coarse
    matches (mapped to full resolution) are returned.
    """
    cfg = config or CoarseToFineConfig()
    img_q, img_ref = _check_image(img_q, "img_q"), _check_image(img_ref, "img_ref")
    (Hq, Wq), (Hr, Wr) = img_q.shape[:2], img_ref.shape[:2]
    hw_q, hw_r = working_resolution(Hq, Wq, cfg.maxdim), working_resolution(Hr, Wr, cfg.maxdim)
    mcfg = replace(cfg.matching, max_matches=None)

    # coarse pass on the whole images
    dq, cq, dr, cr = _run_infer(infer, normalize_rgb([resize_rgb(img_q, hw_q)]),
                                normalize_rgb([resize_rgb(img_ref, hw_r)]))
    a, b, coarse_conf = match_symmetric(dq[0], dr[0], cq[0], cr[0], mcfg.subsample, mcfg.pixel_tol, mcfg)
    coarse_q = map_to_full(a, (0, 0, Wq, Hq), hw_q)
    coarse_r = map_to_full(b, (0, 0, Wr, Hr), hw_r)

    if Hq < hw_q[0] or Wq < hw_q[1] or Hr < hw_r[0] or Wr < hw_r[1]:
        return _finish(_round_inside(coarse_q, Hq, Wq), _round_inside(coarse_r, Hr, Wr), coarse_conf,
                       (Hq, Wq), (Hr, Wr), cfg)

    pairs = select_crop_pairs((Hq, Wq), (Hr, Wr), coarse_q, coarse_r, cfg.maxdim, cfg.overlap,
                              forced_resolution=[hw_q, hw_r])
    all_q, all_r, all_c = [np.zeros((0, 2), np.int64)], [np.zeros((0, 2), np.int64)], [np.zeros(0, np.float32)]
    for s in range(0, len(pairs), cfg.batch_size):
        batch = pairs[s:s + cfg.batch_size]
        tq = normalize_rgb([resize_rgb(img_q[crop_slice(bq)], hw_q) for bq, _ in batch])
        tr = normalize_rgb([resize_rgb(img_ref[crop_slice(br)], hw_r) for _, br in batch])
        dq, cq, dr, cr = _run_infer(infer, tq, tr)
        for k, (bq, br) in enumerate(batch):
            a, b, c = match_symmetric(dq[k], dr[k], cq[k], cr[k], mcfg.subsample, mcfg.pixel_tol, mcfg)
            all_q.append(_round_inside(map_to_full(a, bq, hw_q), Hq, Wq))
            all_r.append(_round_inside(map_to_full(b, br, hw_r), Hr, Wr))
            all_c.append(c)
    return _finish(np.concatenate(all_q), np.concatenate(all_r), np.concatenate(all_c), (Hq, Wq), (Hr, Wr), cfg)


def _finish(xy_q: np.ndarray, xy_r: np.ndarray, conf: np.ndarray, hw_q: tuple[int, int], hw_r: tuple[int, int],
            cfg: CoarseToFineConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """De-duplicate (keeping the highest confidence), sort by flat index, optional uniform thinning."""
    fq = xy_q[:, 1] * hw_q[1] + xy_q[:, 0]
    fr = xy_r[:, 1] * hw_r[1] + xy_r[:, 0]
    order = np.lexsort((-conf, fr, fq))              # best confidence first among identical pairs
    fq, fr, conf = fq[order], fr[order], conf[order]
    kq, kr, first = merge_pairs(fq, fr)
    conf = conf[first].astype(np.float32)
    xy_q = np.stack([kq % hw_q[1], kq // hw_q[1]], axis=1).astype(np.int64)
    xy_r = np.stack([kr % hw_r[1], kr // hw_r[1]], axis=1).astype(np.int64)
    if cfg.matching.max_matches is not None and len(conf) > cfg.matching.max_matches:
        sel = uniform_thinning(xy_q, conf, hw_q, cfg.matching.max_matches)
        xy_q, xy_r, conf = xy_q[sel], xy_r[sel], conf[sel]
    return xy_q, xy_r, conf
