"""The oracle model: a stand-in for :class:`Mast3rModel` built from an RGB-D dataset with GT poses.

Why: the released MASt3R weights cannot be had here, yet every MASt3R path (front-end, map-free,
coarse-to-fine, nodes) must run on real images with realistic predictions. The oracle has the same
interface (``encode`` once, ``infer`` a pair with the requested heads, outputs at network
resolution with the official conventions) and predicts from the dataset's depth and poses, with
injected errors whose sizes are explicit knobs (:class:`OracleNoise`). **Accuracy measured with it
is the pipeline's accuracy under these errors, not the released network's.**

Outputs of ``infer(enc1, enc2)`` per pair (``B`` pairs, channel-last float32 on the CPU):

* view 1: ``pts3d`` [B,H,W,3] view 1's points in camera 1 (m), ``conf`` [B,H,W] >= 1;
* view 2: ``pts3d`` [B,H,W,3] view 2's points *in camera 1* (the official ``pts3d_in_other_view``),
  ``conf``;
* both: ``desc`` [B,H,W,24] unit L2, ``desc_conf`` [B,H,W] > 0.

How the errors enter (per pair, drawn from ``seed`` and the two frame indices, so the same pair
gives the same prediction): the true depth of each view times ``1 + depth_rel * n`` (``n`` unit-std
Gaussian noise correlated over ~2 px); view 2's own points scaled by ``exp(view_scale * N)``;
view 2's pose in camera 1 perturbed by a rotation of rms ``rel_rot_deg`` and a translation of rms
``rel_trans`` metres; both pointmaps scaled by ``exp(pair_scale * N)``. Descriptors are the
:class:`DescriptorField` of each pixel's true world point; a ``desc_outliers`` fraction of 16x16
patches get the descriptors of a point 0.1-1 m away (coherent wrong matches), then every component
gets Gaussian noise of std ``desc_noise`` before re-normalising. Confidences fall where the injected
error is large (``conf = 1 + 9 exp(-e / 0.03)`` for the local relative 3D error ``e``; ``desc_conf``
from the descriptor's deviation, with random spread) and are low where the sensor had no depth
(predictions there come from the nearest measured depth).

Encodings: ``tokens`` [B, N, 256]: channels 0-254 a soft assignment of each patch's world point to
scene anchors (mean-pooled they are a retrieval descriptor, as the front-end uses them); channel 255
of token 0 carries the view id (exact in float32), so encodings cached in a map still resolve: the frame
index for a whole frame, an id >= ``CROP_BASE`` for an unresized crop of a registered frame
(coarse-to-fine; ``oracle_crops.py``), predicted with the frame's geometry in the crop's pixels.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, fields
from pathlib import Path

import cv2
import numpy as np
import torch

from mast3r_ros.geometry.transforms import rotation_exp

from .inference import HEADS, InferenceConfig
from .network import Encoding
from .oracle_scene import CROP_BASE, DESC_DIM, N_ANCHORS, OracleError, OracleSource

_KEY_SCALE = 2.0 ** -20  # frame index -> token value; a power of two keeps it exact in float32
CONF_MAX = 9.0
DESC_NOISE_PX = 1.5  # descriptor noise is correlated over ~1.5 px, like depth noise (a head errs per region)


@dataclass
class OracleNoise:
    """Injected errors (defaults = the issue's "realistic" level; all zero = exact ground truth).

    depth_rel: std of the per-pixel relative depth error (spatially correlated over ~2 px).
    pair_scale: std of the log of the global scale error of a pair (both pointmaps).
    view_scale: std of the log of view 2's own scale error relative to view 1.
    rel_rot_deg: rms rotation error (deg) of view 2's pose in camera 1.
    rel_trans: rms translation error (m) of view 2's camera centre in camera 1.
    desc_outliers: fraction of 16x16 patches whose descriptors are those of a wrong scene point.
    desc_noise: std of the Gaussian noise per descriptor component (before re-normalising).
    seed: seed of every random draw.
    """
    depth_rel: float = 0.02
    pair_scale: float = 0.03
    view_scale: float = 0.01
    rel_rot_deg: float = 1.0
    rel_trans: float = 0.02
    desc_outliers: float = 0.1
    desc_noise: float = 0.05
    seed: int = 0

    @classmethod
    def parse(cls, text: str | None) -> "OracleNoise":
        """``"depth_rel=0.02,pair_scale=0.03,seed=1"`` -> OracleNoise (unnamed knobs keep defaults)."""
        out = cls()
        names = {f.name: f.type for f in fields(cls)}
        for item in (text or "").split(","):
            if not item.strip():
                continue
            name, sep, value = item.partition("=")
            name = name.strip()
            if not sep or name not in names:
                raise ValueError(f"oracle noise {item.strip()!r}: expected NAME=VALUE with NAME one of "
                                 f"{', '.join(names)}")
            try:
                v = int(value) if name == "seed" else float(value)
            except ValueError:
                raise ValueError(f"oracle noise {name}={value!r}: not a number") from None
            if not np.isfinite(v) or v < 0 or (name == "desc_outliers" and v > 1):
                raise ValueError(f"oracle noise {name}={value}: must be >= 0 (a fraction <= 1 for desc_outliers)")
            setattr(out, name, v)
        return out

    def describe(self) -> str:
        return ",".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self))


class OracleModel:
    """Stand-in for :class:`~mast3r_ros.model.Mast3rModel` (see module doc).

    Args:
        source: the registered dataset (:class:`OracleSource`).
        noise: :class:`OracleNoise` (default: the realistic defaults).
    """

    name = "oracle"

    def __init__(self, source: OracleSource, noise: OracleNoise | None = None):
        self.source = source
        self.noise = noise or OracleNoise()
        self.config = InferenceConfig()
        self.device = torch.device("cpu")
        self._tokens: dict[int, torch.Tensor] = {}

    @classmethod
    def from_dataset(cls, path_or_dataset, noise: OracleNoise | None = None, frames=None, calib=None,
                     image_size: int = 512) -> "OracleModel":
        """Open (or take) a dataset, register ``frames`` (None = all) and return the model."""
        dataset = path_or_dataset
        if not hasattr(dataset, "frames"):
            from mast3r_ros.datasets.readers import open_dataset

            dataset = open_dataset(path_or_dataset)
        return cls(OracleSource(dataset, frames, calib, image_size), noise)

    @property
    def checkpoint_sha256(self) -> str:
        """Stands for the checkpoint hash a map records: encodings made by an oracle of the same
        dataset (and calibration) are interchangeable, whatever the noise."""
        from mast3r_ros.datasets.calibration import RgbdCalibration

        calib = (self.source.calib or RgbdCalibration()).to_dict()  # no calibration = the identity one
        text = f"oracle model:{Path(self.source.dataset.root).resolve()}:{json.dumps(calib, sort_keys=True)}"
        return hashlib.sha256(text.encode()).hexdigest()

    def identity(self) -> str:
        """What the model is, for reports: ``oracle(<dataset>; <noise>)``."""
        return f"oracle({self.source.dataset.root}; {self.noise.describe()})"

    # ------------------------------------------------------------------ encoder
    def encode(self, images: torch.Tensor) -> Encoding:
        """[B, 3, H, W] normalised images -> :class:`Encoding` (frame resolved by content hash)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [B, 3, H, W], got {tuple(images.shape)}")
        h, w = images.shape[-2:]
        toks = []
        for img in images:
            index = self.source.identify(img)
            t = self._tokens.get(index)
            if t is None:
                t = torch.from_numpy(self.source.patch_tokens(index))
                t = torch.cat([t, torch.zeros(len(t), 1)], 1)
                t[0, N_ANCHORS] = (index + 1) * _KEY_SCALE
                if index < CROP_BASE:  # whole frames only: crops are many and rarely seen twice
                    self._tokens[index] = t
            toks.append(t)
        tokens = torch.stack(toks)
        pos = torch.cartesian_prod(torch.arange(h // 16), torch.arange(w // 16))[None].expand(len(toks), -1, -1)
        return Encoding(tokens, pos, (int(h), int(w)))

    @staticmethod
    def frame_index(enc: Encoding, b: int) -> int:
        v = float(enc.tokens[b, 0, -1])
        index = int(round(v / _KEY_SCALE)) - 1
        if enc.tokens.shape[-1] != N_ANCHORS + 1 or index < 0 or abs((index + 1) * _KEY_SCALE - v) > 1e-12:
            raise OracleError("oracle model: encoding was not made by the oracle model")
        return index

    # ------------------------------------------------------------------ decoder + heads
    def infer(self, enc1: Encoding, enc2: Encoding, heads1=HEADS, heads2=HEADS):
        """Predictions for the pairs (enc1[i], enc2[i]); heads as :meth:`Mast3rModel.infer`."""
        for heads in (heads1, heads2):
            if not set(heads) <= HEADS:
                raise ValueError(f"unknown heads {set(heads) - HEADS}; choose from {sorted(HEADS)}")
        if enc1.tokens.shape[0] != enc2.tokens.shape[0]:
            raise ValueError("enc1 and enc2 must hold the same number of images")
        per_pair = [self._pair(self.frame_index(enc1, b), self.frame_index(enc2, b), heads1, heads2)
                    for b in range(enc1.tokens.shape[0])]
        out = []
        for side in (0, 1):
            keys = per_pair[0][side].keys()
            out.append({k: torch.stack([p[side][k] for p in per_pair]) for k in keys})
        return out[0], out[1]

    def infer_pair(self, img1: torch.Tensor, img2: torch.Tensor, heads1=HEADS, heads2=HEADS):
        return self.infer(self.encode(img1), self.encode(img2), heads1, heads2)

    def _pair(self, i1: int, i2: int, heads1, heads2) -> tuple[dict, dict]:
        nz = self.noise
        rng = np.random.default_rng([nz.seed, *self.source.view_key(i1), *self.source.view_key(i2)])
        f1, f2 = self.source.frame(i1), self.source.frame(i2)
        s_pair = float(np.exp(nz.pair_scale * rng.standard_normal()))
        s_view = float(np.exp(nz.view_scale * rng.standard_normal()))
        w = np.radians(nz.rel_rot_deg) / np.sqrt(3) * rng.standard_normal(3)
        dt = nz.rel_trans / np.sqrt(3) * rng.standard_normal(3)
        T_1_2 = np.linalg.inv(f1.T_world_cam) @ f2.T_world_cam
        R_err = rotation_exp(w) @ T_1_2[:3, :3]
        n1, n2 = self._depth_noise(rng, f1.depth.shape), self._depth_noise(rng, f2.depth.shape)
        p1, p2 = {}, {}
        if "pts3d" in heads1:
            X = f1.points_cam() * (1 + nz.depth_rel * n1)[..., None]
            p1["pts3d"] = torch.from_numpy((s_pair * X).astype(np.float32))
            p1["conf"] = _conf(nz.depth_rel * np.abs(n1), f1.measured)
        if "pts3d" in heads2:
            X2 = f2.points_cam() * (s_view * (1 + nz.depth_rel * n2))[..., None]
            X21 = X2 @ R_err.T + (T_1_2[:3, 3] + dt)
            X21_true = f2.points_cam() @ T_1_2[:3, :3].T + T_1_2[:3, 3]
            err = np.linalg.norm(X21 - X21_true, axis=-1) / np.maximum(np.linalg.norm(X21_true, axis=-1), 1e-6)
            p2["pts3d"] = torch.from_numpy((s_pair * X21).astype(np.float32))
            p2["conf"] = _conf(err, f2.measured)
        if "desc" in heads1:
            p1["desc"], p1["desc_conf"] = self._descriptors(f1, rng)
        if "desc" in heads2:
            p2["desc"], p2["desc_conf"] = self._descriptors(f2, rng)
        return p1, p2

    def _depth_noise(self, rng: np.random.Generator, shape) -> np.ndarray:
        """Unit-std Gaussian field correlated over ~2 px (a network errs per region, not per pixel)."""
        n = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), 2.0)
        return (n / max(float(n.std()), 1e-12)).astype(np.float64)

    def _descriptors(self, fr, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        nz = self.noise
        hn, wn = fr.depth.shape
        Xw = fr.points_world()
        gh, gw = hn // 16, wn // 16
        outlier = rng.random((gh, gw)) < nz.desc_outliers
        offset = rng.standard_normal((gh, gw, 3))
        offset *= (rng.uniform(0.1, 1.0, (gh, gw)) / np.linalg.norm(offset, axis=-1))[..., None]
        Xw = Xw + np.where(outlier[..., None], offset, 0.0).repeat(16, 0).repeat(16, 1)
        clean = self.source.field(Xw.reshape(-1, 3))
        noise = cv2.GaussianBlur(rng.standard_normal((hn, wn, DESC_DIM)).astype(np.float32), (0, 0), DESC_NOISE_PX)
        noise *= nz.desc_noise / max(float(noise.std()), 1e-12)
        noisy = clean + torch.from_numpy(noise.reshape(-1, DESC_DIM))
        noisy = noisy / noisy.norm(dim=1, keepdim=True).clamp_min(1e-12)
        # Confidence: how far the descriptor is from the true point's one (outliers: far), with spread.
        true_desc = clean
        if outlier.any():
            mask = torch.from_numpy(outlier.repeat(16, 0).repeat(16, 1).ravel())
            true_desc = clean.clone()
            true_desc[mask] = self.source.field(fr.points_world().reshape(-1, 3)[mask.numpy()])
        cos = (noisy * true_desc).sum(1).clamp(0, 1).numpy().reshape(hn, wn)
        spread = np.exp(0.3 * rng.standard_normal((hn, wn)))
        dconf = 1.0 + CONF_MAX * cos**8 * spread * np.where(fr.measured, 1.0, 0.2)
        return noisy.reshape(hn, wn, -1), torch.from_numpy(dconf.astype(np.float32))


def _conf(err_rel: np.ndarray, measured: np.ndarray) -> torch.Tensor:
    """Pointmap confidence (>= 1) falling with the injected relative 3D error; low without sensor depth
    (below the front-end's default ``min_pts_conf`` 1.5)."""
    c = 1.0 + CONF_MAX * np.exp(-err_rel / 0.03)
    c = np.where(measured, c, 1.0 + 0.04 * (c - 1.0))
    return torch.from_numpy(c.astype(np.float32))
