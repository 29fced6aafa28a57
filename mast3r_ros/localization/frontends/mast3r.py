"""MASt3R front-end: dense descriptor matching with keyframe encodings cached in the map.

Per keyframe (map build) the image is encoded once and the encoder tokens are stored, with the
keyframe's 3D points at network resolution when it has depth (the localizer reads them back when a query
needs them, keeping at most ``LocalizerConfig.keyframe_cache_mb`` in memory). Per query the image is encoded once;
against the selected keyframes (batched) only the decoders and the heads that are needed run:
descriptors on both sides, and the keyframe's pointmap (view 1 = keyframe, metric, in the keyframe
camera frame) only when the keyframe has no depth. Matches come from fast reciprocal NN started
from valid keyframe pixels with a pixel tolerance, as in the paper's localization.

Stored keyframe arrays (names are part of the map format):
    mast3r_tokens  [N, C] float32   encoder output (N = (H/16)*(W/16) patches, row-major)
    mast3r_tf      [8] int64        original W,H; resized W,H; crop x0,y0; network W,H
    mast3r_global  [C] float32      unit-norm mean of the tokens (retrieval)
    mast3r_X       [Hn, Wn, 3] float32 keyframe-camera points (m) at network pixels, NaN = no depth;
                   [0, 0, 3] when the keyframe has no depth (the predicted pointmap is used)
Map global: ``mast3r_checkpoint`` uint8 sha256 of the checkpoint the encodings came from.

With ``coarse_to_fine`` (images larger than the network image, keyframes with depth) a query is matched
to a keyframe at full resolution instead (paper section 3.4): a coarse pass on the downscaled pair picks
crop pairs, the crops run through the network unresized, and the matches keep full-resolution pixels;
their 3D points come from the keyframe's full-resolution depth. The cached tokens are not used there
(the keyframe image is encoded again); the localizer then loads keyframe images and depth.
"""
from __future__ import annotations

import hashlib

import numpy as np
import torch

from mast3r_ros.geometry.camera import backproject_depth, check_intrinsics
from mast3r_ros.geometry.transforms import transform_points
from mast3r_ros.localization.covariance import depth_point_covariance, pointmap_covariance, rotate_covariance
from mast3r_ros.localization.frontends.base import Correspondences, FrontEndError, QueryFrame
from mast3r_ros.localization.frontends.mast3r_config import Mast3rFrontEndConfig
from mast3r_ros.map import Keyframe
from mast3r_ros.map.keys import MAST3R_ARRAYS, MAST3R_CHECKPOINT
from mast3r_ros.matching import MatchingConfig, fast_reciprocal_nn
from mast3r_ros.matching.coarse_to_fine import CoarseToFineConfig, coarse_to_fine_match
from mast3r_ros.matching.crops import working_resolution
from mast3r_ros.model import Encoding, ImageTransform, InferenceConfig, Mast3rModel, file_sha256, preprocess_array


def global_descriptor(tokens: np.ndarray) -> np.ndarray:
    """``mast3r_global``: [N,C] encoder tokens -> [C] float32 unit-norm mean (the retrieval vector)."""
    pooled = np.asarray(tokens, np.float32).mean(axis=0)
    return (pooled / max(float(np.linalg.norm(pooled)), 1e-12)).astype(np.float32)


def encoding_from_tokens(tokens: np.ndarray, tf: ImageTransform, device=None) -> Encoding:
    """The :class:`Encoding` of cached ``mast3r_tokens`` ([N,C] float32, row-major 16-px patches) of a
    network image of ``tf``; ValueError when the token count does not fit that image."""
    wn, hn = tf.network_wh
    t = torch.from_numpy(np.asarray(tokens, np.float32))[None]
    if t.shape[1] != (hn // 16) * (wn // 16):
        raise ValueError(f"{t.shape[1]} cached tokens do not fit a {wn}x{hn} image")
    pos = torch.cartesian_prod(torch.arange(hn // 16), torch.arange(wn // 16))[None]
    return Encoding(t.to(device), pos.to(device), (hn, wn)) if device is not None else Encoding(t, pos, (hn, wn))


def network_pointmap_from_depth(K: np.ndarray, depth: np.ndarray, tf: ImageTransform) -> np.ndarray:
    """3D points (camera frame, m) seen at each network pixel: [Hn, Wn, 3] float32, NaN where no depth.

    Each network pixel centre maps to an original pixel (nearest); its depth is back-projected with
    the original intrinsics, so the 3D point is exact for that original pixel.
    """
    wn, hn = tf.network_wh
    xy = tf.nearest_original_pixels()
    z = depth[xy[:, 1], xy[:, 0]].astype(np.float64)
    z[~(np.isfinite(z) & (z > 0))] = np.nan
    X = backproject_depth(K, xy.astype(np.float64), z)
    return X.reshape(hn, wn, 3).astype(np.float32)


class Mast3rFrontEnd:
    """MASt3R implementation of :class:`~mast3r_ros.localization.frontends.base.FrontEnd`."""

    name = "mast3r"
    needs_depth = False
    tracking_keyframes = 1  # a keyframe costs a decoder pass: while tracking, the one nearest the prior
    array_names = MAST3R_ARRAYS
    index_array_names = ("mast3r_global",)  # a build keeps these, not the tokens, until the index is written
    global_names = (MAST3R_CHECKPOINT,)

    def __init__(self, config: Mast3rFrontEndConfig, model: Mast3rModel | None = None):
        self.config = config
        if model is None:
            if not config.checkpoint:
                raise FrontEndError("the mast3r front-end needs a checkpoint (--checkpoint PATH to a local .pth)")
            inference = InferenceConfig(config.device, config.amp_dtype, bf16_weights=config.bf16_weights)
            model = Mast3rModel.from_checkpoint(config.checkpoint, inference)
            self.checkpoint_sha256 = file_sha256(config.checkpoint)
        else:
            # a model may name what its encodings come from (the oracle model does)
            self.checkpoint_sha256 = (getattr(model, "checkpoint_sha256", None)
                                      or hashlib.sha256(b"in-memory model").hexdigest())
        self.model = model
        self.matching = MatchingConfig(subsample=config.subsample, pixel_tol=config.pixel_tol,
                                       backend=config.nn_backend, device=config.device)
        if config.coarse_to_fine and config.image_size != 512:
            raise FrontEndError(f"coarse_to_fine needs image_size 512 (the crop table's), got {config.image_size}")
        self.coarse_to_fine = CoarseToFineConfig(matching=self.matching)

    @property
    def keyframe_pixels(self) -> bool:
        """The localizer must load keyframe images and depth (coarse-to-fine matches full resolution)."""
        return bool(self.config.coarse_to_fine)

    # ------------------------------------------------------------------ map build
    def _encode(self, image: np.ndarray) -> tuple[Encoding, ImageTransform]:
        net_img = preprocess_array(image, self.config.image_size)
        return self.model.encode(net_img.tensor), net_img.transform

    def prepare_keyframe(self, image: np.ndarray, K: np.ndarray, depth: np.ndarray | None) -> dict[str, np.ndarray]:
        K = check_intrinsics(K)
        enc, tf = self._encode(image)
        return self.keyframe_arrays(enc, tf, K, depth)

    def keyframe_arrays(self, enc: Encoding, tf: ImageTransform, K: np.ndarray,
                        depth: np.ndarray | None) -> dict[str, np.ndarray]:
        """A keyframe's arrays from its encoding (batch item 0) already computed, e.g. by the mapper;
        ``depth``: [H,W] float32 m of the original image, or None."""
        tokens = enc.tokens[0].float().cpu().numpy()
        arrays = {"mast3r_tokens": tokens, "mast3r_tf": tf.to_array(),
                  "mast3r_global": global_descriptor(tokens)}
        if depth is not None:
            depth = np.asarray(depth, dtype=np.float32)
            if depth.shape != tuple(tf.original_wh[::-1]):
                raise FrontEndError(f"depth shape {depth.shape} does not match image {tuple(tf.original_wh[::-1])}")
            arrays["mast3r_X"] = network_pointmap_from_depth(K, depth, tf)
        else:
            arrays["mast3r_X"] = np.zeros((0, 0, 3), np.float32)
        return arrays

    def fit_global(self, keyframe_arrays: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        return {MAST3R_CHECKPOINT: np.frombuffer(bytes.fromhex(self.checkpoint_sha256), np.uint8).copy()}

    def load_global(self, arrays: dict[str, np.ndarray]) -> None:
        stored = arrays.get(MAST3R_CHECKPOINT)
        if stored is None:
            raise FrontEndError("map has no MASt3R checkpoint record (built with another front-end?)")
        if bytes(np.asarray(stored, np.uint8)).hex() != self.checkpoint_sha256:
            raise FrontEndError("map was built with a different MASt3R checkpoint (sha256 "
                                f"{bytes(np.asarray(stored, np.uint8)).hex()[:12]}...) than the one loaded "
                                f"({self.checkpoint_sha256[:12]}...): its cached encodings cannot be reused")

    def keyframe_descriptor(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(arrays["mast3r_global"], np.float32)

    # ------------------------------------------------------------------ query
    def prepare_query(self, query: QueryFrame) -> None:
        if "mast3r" not in query.cache:
            check_intrinsics(query.K)
            enc, tf = self._encode(query.image)
            query.cache["mast3r"] = (enc, tf, global_descriptor(enc.tokens[0].float().cpu().numpy()))

    def query_descriptor(self, query: QueryFrame) -> np.ndarray:
        self.prepare_query(query)
        return query.cache["mast3r"][2]

    def _keyframe_encoding(self, keyframe: Keyframe) -> tuple[Encoding, ImageTransform]:
        arr = keyframe.arrays
        missing = [n for n in MAST3R_ARRAYS if n not in arr]
        if missing:
            raise FrontEndError(f"keyframe {keyframe.id} lacks MASt3R arrays {missing}")
        try:
            tf = ImageTransform.from_array(arr["mast3r_tf"])
            return encoding_from_tokens(arr["mast3r_tokens"], tf, self.model.device), tf
        except ValueError as exc:
            raise FrontEndError(f"keyframe {keyframe.id}: {exc}") from None

    def match(self, query: QueryFrame, keyframe: Keyframe) -> Correspondences:
        """FRM matches (keyframe -> query) whose keyframe pixel has a 3D point; X in the map frame."""
        return self.match_many(query, [keyframe])[0]

    def match_many(self, query: QueryFrame, keyframes: list[Keyframe]) -> list[Correspondences]:
        """:meth:`match` for several keyframes, one per entry; keyframes of the same network size that
        need the same heads (pointmap only without stored depth) are decoded in one batched pass."""
        self.prepare_query(query)
        groups: dict[tuple, list[int]] = {}
        loaded = [self._keyframe_encoding(kf) for kf in keyframes]
        out: list[Correspondences | None] = [None] * len(keyframes)
        for i, (kf, (enc_k, _)) in enumerate(zip(keyframes, loaded)):
            if self._fine(query, kf):
                out[i] = self._match_fine(query, kf)
            else:
                groups.setdefault((enc_k.image_hw, _has_depth(kf)), []).append(i)
        enc_q = query.cache["mast3r"][0]
        for (_, use_depth), idx in groups.items():
            enc_k = Encoding.cat([loaded[i][0] for i in idx])
            heads_k = {"desc"} if use_depth else {"desc", "pts3d"}
            pred_k, pred_q = self.model.infer(enc_k, enc_q[[0] * len(idx)], heads1=heads_k, heads2={"desc"})
            for b, i in enumerate(idx):
                one_k = {name: v[b] for name, v in pred_k.items()}
                one_q = {name: v[b] for name, v in pred_q.items()}
                out[i] = self._correspondences(query, keyframes[i], loaded[i][1], one_k, one_q)
        return out

    def _fine(self, query: QueryFrame, keyframe: Keyframe) -> bool:
        """Coarse-to-fine applies: enabled, keyframe pixels and depth loaded, an image larger than the network's."""
        if not (self.config.coarse_to_fine and _has_depth(keyframe) and keyframe.image is not None
                and keyframe.depth is not None):
            return False
        return any(img.shape[0] > working_resolution(*img.shape[:2])[0] or
                   img.shape[1] > working_resolution(*img.shape[:2])[1] for img in (query.image, keyframe.image))

    def _infer_descriptors(self, imgs_k: torch.Tensor, imgs_q: torch.Tensor):
        """The coarse-to-fine network callable: [B, 3, h, w] pairs -> (desc_k, conf_k, desc_q, conf_q)."""
        dev = self.model.device
        pred_k, pred_q = self.model.infer(self.model.encode(imgs_k.to(dev)), self.model.encode(imgs_q.to(dev)),
                                          heads1={"desc"}, heads2={"desc"})
        return pred_k["desc"], pred_k["desc_conf"], pred_q["desc"], pred_q["desc_conf"]

    def _match_fine(self, query: QueryFrame, keyframe: Keyframe) -> Correspondences:
        """Full-resolution coarse-to-fine matches; 3D from the keyframe's full-resolution depth."""
        xy_k, xy_q, dconf = coarse_to_fine_match(keyframe.image, query.image, self._infer_descriptors,
                                                 self.coarse_to_fine)
        depth = np.asarray(keyframe.depth, np.float64)
        if depth.shape != keyframe.image.shape[:2]:
            raise FrontEndError(f"keyframe {keyframe.id}: depth {depth.shape} does not match its image "
                                f"{keyframe.image.shape[:2]}")
        z = depth[xy_k[:, 1], xy_k[:, 0]]
        keep = (dconf >= self.config.min_desc_conf) & np.isfinite(z) & (z > 0)
        xy_k, xy_q, dconf, z = xy_k[keep], xy_q[keep], dconf[keep], z[keep]
        if len(z) == 0:
            return Correspondences.empty(int(keyframe.id))
        X_kf = backproject_depth(keyframe.K, xy_k.astype(np.float64), z)
        C_kf = depth_point_covariance(X_kf, keyframe.K)
        return Correspondences(xy_q.astype(np.float64), transform_points(keyframe.T_map_cam, X_kf),
                               (dconf / (1.0 + dconf)).astype(np.float32), int(keyframe.id),
                               rotate_covariance(keyframe.T_map_cam[:3, :3], C_kf))

    def _correspondences(self, query: QueryFrame, keyframe: Keyframe, tf_k: ImageTransform,
                         pred_k: dict[str, torch.Tensor], pred_q: dict[str, torch.Tensor]) -> Correspondences:
        """FRM from the keyframe's valid grid pixels on one pair's outputs ([H, W, ...] per key)."""
        tf_q = query.cache["mast3r"][1]
        X_net = np.asarray(keyframe.arrays["mast3r_X"], np.float32)
        if not _has_depth(keyframe):
            X_net = pred_k["pts3d"].cpu().numpy()
            X_net[pred_k["conf"].cpu().numpy() < self.config.min_pts_conf] = np.nan
        valid = np.all(np.isfinite(X_net), axis=-1)
        step = self.config.subsample
        grid = np.zeros_like(valid)
        grid[step // 2::step, step // 2::step] = True
        ys, xs = np.nonzero(valid & grid)
        if len(xs) == 0:
            return Correspondences.empty(int(keyframe.id))
        xy_k, xy_q = fast_reciprocal_nn(pred_k["desc"], pred_q["desc"], init_xy=(xs, ys),
                                        pixel_tol=self.config.pixel_tol, config=self.matching)
        dconf = np.minimum(pred_k["desc_conf"].cpu().numpy()[xy_k[:, 1], xy_k[:, 0]],
                           pred_q["desc_conf"].cpu().numpy()[xy_q[:, 1], xy_q[:, 0]])
        keep = dconf >= self.config.min_desc_conf
        xy_k, xy_q, dconf = xy_k[keep], xy_q[keep], dconf[keep]
        X_kf = X_net[xy_k[:, 1], xy_k[:, 0]].astype(np.float64)
        X_map = transform_points(keyframe.T_map_cam, X_kf)
        conf = (dconf / (1.0 + dconf)).astype(np.float32)  # (0, inf) -> (0, 1), monotone
        # the 3D points' own noise (covariance.py): sensor depth, or the pointmap's predicted confidence
        C_kf = (depth_point_covariance(X_kf, keyframe.K) if _has_depth(keyframe) else
                pointmap_covariance(X_kf, pred_k["conf"].cpu().numpy()[xy_k[:, 1], xy_k[:, 0]]))
        return Correspondences(tf_q.network_to_original(xy_q), X_map, conf, int(keyframe.id),
                               rotate_covariance(keyframe.T_map_cam[:3, :3], C_kf))


def _has_depth(keyframe: Keyframe) -> bool:
    """The keyframe stores depth 3D points (else its predicted pointmap is needed)."""
    return np.asarray(keyframe.arrays["mast3r_X"]).size > 0
