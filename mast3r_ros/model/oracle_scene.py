"""Dataset side of the oracle model: which frame a network image is, and that frame's true geometry.

The oracle model (``oracle.py``) receives what the network receives, preprocessed image tensors.
:class:`OracleSource` opens an RGB-D dataset with ground-truth poses, preprocesses every selected
frame exactly as the product does (``preprocess_array`` of the RGB image the dataset reader
returns) and keeps a content hash -> frame registry, so a tensor is resolved to its frame on the
oracle's side. Per frame it provides the true geometry at network resolution:

* ``depth`` [Hn, Wn] float32 metres at every network pixel: the sensor depth of the original pixel
  the network pixel centre falls in (nearest), holes filled with the nearest measured depth
  (MASt3R predicts everywhere; ``measured`` says where the sensor saw something);
* ``K_net`` [3, 3] intrinsics of the network image; ``T_world_cam`` [4, 4] camera-to-world (m).

Scene truth = the dataset's depth, intrinsics and poses read as one registered camera (the reading
every command uses without ``--rgbd-calib``); with an :class:`RgbdCalibration` the depth is first
registered to colour and the colour camera's pose and intrinsics are used, as the calibrated
commands do.

It also holds the two fixed "learned" functions of the stand-in, both functions of world points:
:class:`DescriptorField` (local descriptors) and the retrieval anchors of the encoder tokens.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import PIL.Image
import torch
from scipy.ndimage import distance_transform_edt

from .oracle_cache import entry_name, file_id, memo
from .oracle_crops import CropIndex, frame_patch_keys
from .preprocess import ImageTransform, preprocess_array, preprocess_pil

DESC_DIM = 24
N_ANCHORS = 255          # encoder token channels used for retrieval (+1 carries the frame key)
ANCHOR_SIGMA_M = 0.3     # soft-assignment width of a patch's world point to the anchors
CROP_BASE = 2 ** 20      # view ids >= this are crops of a frame (ids below are whole frames)


class OracleError(ValueError):
    """The oracle cannot answer (an image that is not a registered dataset frame, ...)."""


def image_key(tensor: torch.Tensor) -> str:
    """Content hash of one network image [3, H, W] in [-1, 1] (its uint8 pixels and size)."""
    u8 = torch.round((tensor.detach().float().cpu() * 0.5 + 0.5) * 255).clamp(0, 255).to(torch.uint8)
    h = hashlib.blake2b(u8.numpy().tobytes(), digest_size=16)
    h.update(str(tuple(u8.shape)).encode())
    return h.hexdigest()


@dataclass
class OracleFrame:
    """True geometry of one dataset frame at network resolution (see module doc)."""
    index: int
    transform: ImageTransform
    K_net: np.ndarray        # [3,3] float64
    T_world_cam: np.ndarray  # [4,4] float64 camera-to-world, metres
    depth: np.ndarray        # [Hn,Wn] float32 metres, > 0 everywhere (holes filled)
    measured: np.ndarray     # [Hn,Wn] bool, sensor depth at this pixel

    def rays(self) -> np.ndarray:
        """[Hn,Wn,3] float64 camera rays with z = 1 of every network pixel centre."""
        hn, wn = self.depth.shape
        x, y = np.meshgrid(np.arange(wn, dtype=np.float64), np.arange(hn, dtype=np.float64))
        Ki = np.linalg.inv(self.K_net)
        return np.stack([Ki[0, 0] * x + Ki[0, 1] * y + Ki[0, 2], Ki[1, 1] * y + Ki[1, 2], np.ones_like(x)], -1)

    def points_cam(self) -> np.ndarray:
        """[Hn,Wn,3] float64 true points (camera frame, m) seen at each network pixel."""
        return self.rays() * self.depth[..., None]

    def points_world(self) -> np.ndarray:
        X = self.points_cam()
        T = self.T_world_cam
        return X @ T[:3, :3].T + T[:3, 3]


class DescriptorField:
    """A fixed smooth, scene-unique map from world points to 24-d unit descriptors.

    Why this form: FRM needs descriptors whose nearest neighbour in the other image is the pixel
    seeing the same surface point. Random Fourier features of the world point at several
    wavelengths (``wavelengths_m``, ``per_level`` random directions each) are continuous
    (neighbouring pixels have neighbouring descriptors, so matching errors are pixel-sized) and
    separate distant points (long wavelengths), like a positional encoding. It plays the role of
    the trained descriptor head; one evaluation is a [N,3] x [3,24] product, cheap enough per pair.
    """

    def __init__(self, seed: int = 0, wavelengths_m=(2.0, 0.5, 0.12, 0.04), per_level: int = 6):
        rng = np.random.default_rng(seed)
        dirs = rng.standard_normal((len(wavelengths_m) * per_level, 3))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        freq = np.repeat(2 * np.pi / np.asarray(wavelengths_m, np.float64), per_level)
        self.W = torch.from_numpy(dirs * freq[:, None])          # [24, 3] rad/m
        self.phase = torch.from_numpy(rng.uniform(0, 2 * np.pi, len(freq)))
        if len(freq) != DESC_DIM:
            raise ValueError(f"descriptor field must have {DESC_DIM} features, got {len(freq)}")

    def __call__(self, X: np.ndarray) -> torch.Tensor:
        """[N,3] world points (m) -> [N,24] float32 unit descriptors."""
        X = torch.as_tensor(np.asarray(X), dtype=torch.float64).reshape(-1, 3)
        out = torch.cos(X @ self.W.T + self.phase).float()
        return out / out.norm(dim=1, keepdim=True).clamp_min(1e-12)


class OracleSource:
    """Registered frames of an RGB-D dataset (see module doc).

    Args:
        dataset: an opened :class:`~mast3r_ros.datasets.readers.RgbdDataset` with poses.
        register: frames whose pixels are registered (see :meth:`register`); None = all.
        calib: optional :class:`~mast3r_ros.datasets.calibration.RgbdCalibration`.
        image_size: long side of the network image (as the front-end's ``image_size``).
        cache_frames: frames whose geometry is kept in memory (LRU).
    """

    def __init__(self, dataset, register=None, calib=None, image_size: int = 512, cache_frames: int = 64):
        self.dataset = dataset
        self.calib = calib
        self.image_size = image_size
        self._frames = {f.index: f for f in dataset.frames() if f.T_world_cam is not None}
        if not self._frames:
            raise OracleError(f"oracle model: no frames with ground-truth poses in {dataset.root}")
        self._registry: dict[str, int] = {}
        self._transforms: dict[int, ImageTransform] = {}
        self._registered: set[int] = set()
        self._cache: OrderedDict[int, OracleFrame] = OrderedDict()
        self._cache_frames = cache_frames
        self._crop_index = CropIndex()
        self._crop_ids: dict[tuple[int, ...], int] = {}
        self._crop_views: dict[int, tuple[int, ImageTransform]] = {}
        self._rgb_cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self.register(register)
        self.field = DescriptorField()
        self.anchors = self._fit_anchors()

    def register(self, frames=None) -> None:
        """Add frames (a frame spec, an iterable of indices, or None = all) to the content registry.
        Only registered frames can be recognised from their pixels; every posed frame of the dataset
        has geometry (encodings stored in a map carry their frame index)."""
        if frames is None:
            wanted = list(self._frames)
        elif isinstance(frames, str) or hasattr(frames, "contains"):
            wanted = [f.index for f in self.dataset.frames(frames)]
        else:
            wanted = [int(i) for i in frames]
        for i in wanted:
            if i in self._registered:
                continue
            if i not in self._frames:
                raise OracleError(f"oracle model: frame {i} of {self.dataset.root} has no ground-truth pose")
            reg = self._registration(self._frames[i])
            tf = ImageTransform.from_array(reg["transform"])
            self._registry.setdefault(str(reg["key"]), i)
            if reg["crop_keys"].size:
                self._crop_index.add_keys(i, reg["crop_keys"], *tf.original_wh)
            self._transforms[i] = tf
            self._registered.add(i)

    def _registration(self, frame) -> dict[str, np.ndarray]:
        """A frame's content key, image transform [8] (original, resized, crop origin, network: (w, h) /
        (x, y) each) and crop-index patch keys (empty when the image is not larger than the network's);
        memoised on disk by its colour file (``oracle_cache``)."""
        def compute() -> dict[str, np.ndarray]:
            rgb = self.dataset.load_rgb(frame)
            net = preprocess_array(rgb, self.image_size)
            tf = net.transform
            crops = frame_patch_keys(rgb) if tf.resized_wh != tf.original_wh else np.zeros(0, np.uint64)
            return {"key": np.array(image_key(net.tensor[0])), "crop_keys": crops,
                    "transform": tf.to_array()}

        return memo(entry_name("frame", [type(self.dataset).__name__, file_id(frame.rgb_path), self.image_size]),
                    compute)

    @property
    def indices(self) -> list[int]:
        """Registered frame indices (recognisable from their pixels)."""
        return sorted(self._registered)
    def identify(self, tensor: torch.Tensor) -> int:
        """View id of a network image [3, H, W]: the dataset frame index of a whole registered frame, or
        an id >= CROP_BASE for an unresized window of one (coarse-to-fine crops, ``oracle_crops.py``);
        OracleError when it is neither."""
        key = image_key(tensor)
        if key not in self._registry:
            u8 = torch.round((tensor.detach().float().cpu() * 0.5 + 0.5) * 255).clamp(0, 255).to(torch.uint8)
            found = self._crop_index.find(np.ascontiguousarray(u8.permute(1, 2, 0).numpy()), self._rgb)
            if found is not None:
                return self._crop_view(*found, int(tensor.shape[-1]), int(tensor.shape[-2]))
            raise OracleError(f"oracle model: this {tuple(tensor.shape[-2:])} image is not a registered frame "
                              f"of {self.dataset.root} (the stand-in only knows that dataset's images)")
        return self._registry[key]

    def _rgb(self, index: int) -> np.ndarray:
        """Full-resolution RGB of a frame (a few kept), for verifying crops."""
        rgb = self._rgb_cache.get(index)
        if rgb is None:
            rgb = self._rgb_cache[index] = self.dataset.load_rgb(self._frames[index])
            while len(self._rgb_cache) > 8:
                self._rgb_cache.popitem(last=False)
        return rgb

    def _crop_view(self, index: int, x0: int, y0: int, w: int, h: int) -> int:
        """View id of the w x h window at (x0, y0) of frame ``index`` (original pixels, no resizing)."""
        key = (index, x0, y0, w, h)
        if key not in self._crop_ids:
            W, H = self.dataset.image_size
            view = CROP_BASE + len(self._crop_ids)
            self._crop_ids[key] = view
            self._crop_views[view] = (index, ImageTransform((W, H), (W, H), (x0, y0), (w, h)))
        return self._crop_ids[key]

    def view_key(self, view: int) -> tuple[int, ...]:
        """What a view is, for seeding its noise: (frame index,) or (CROP_BASE, frame, x0, y0, w, h), so
        the same crop gets the same prediction whatever order crops were first seen in."""
        if view not in self._crop_views:
            return (view,)
        index, tf = self._crop_views[view]
        return (CROP_BASE, index, *tf.crop_xy0, *tf.network_wh)

    def crop_box(self, view: int) -> tuple[int, tuple[int, int, int, int]] | None:
        """(frame index, (x0, y0, x1, y1)) of a crop view id, None for a whole frame."""
        if view not in self._crop_views:
            return None
        index, tf = self._crop_views[view]
        (x0, y0), (w, h) = tf.crop_xy0, tf.network_wh
        return index, (x0, y0, x0 + w, y0 + h)

    def frame(self, index: int) -> OracleFrame:
        fr = self._cache.get(index)
        if fr is None:
            fr = self._load(index)
            self._cache[index] = fr
            while len(self._cache) > self._cache_frames:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(index)
        return fr

    def _load(self, view: int) -> OracleFrame:
        """True geometry of a view: a whole frame at network resolution, or a crop in its own pixels
        (the crop's intrinsics; its ``index`` is the view id)."""
        if view in self._crop_views:
            index, tf = self._crop_views[view]
        else:
            index = view
            if index not in self._frames:
                raise OracleError(f"oracle model: frame {index} of {self.dataset.root} has no ground-truth pose")
            if index not in self._transforms:  # the transform depends on the image size only
                blank = PIL.Image.new("RGB", tuple(self.dataset.image_size))
                self._transforms[index] = preprocess_pil(blank, self.image_size).transform
            tf = self._transforms[index]
        f = self._frames[index]
        depth = self.dataset.load_depth(f)
        if depth is None:
            raise OracleError(f"oracle model: frame {index} has no depth image")
        K, T = self.dataset.K, f.T_world_cam
        if self.calib is not None:
            depth = self.calib.depth_in_colour(depth, K, self.dataset.image_size)
            K, T = self.calib.colour_K(K), self.calib.colour_pose(T)
        wn, hn = tf.network_wh
        xy = tf.nearest_original_pixels()
        z = depth[xy[:, 1], xy[:, 0]].reshape(hn, wn).astype(np.float32)
        measured = np.isfinite(z) & (z > 0)
        if not measured.any():
            raise OracleError(f"oracle model: frame {index} has no valid depth")
        _, (iy, ix) = distance_transform_edt(~measured, return_indices=True)
        filled = z[iy, ix]
        return OracleFrame(view, tf, tf.intrinsics_to_network(K), np.asarray(T, np.float64), filled, measured)

    def _fit_anchors(self) -> np.ndarray:
        """[N_ANCHORS, 3] world points spread over the scene (k-means of sampled frame points); memoised
        on disk by what they are computed from (``oracle_cache``)."""
        idx = sorted(self._frames)  # every posed frame: anchors must not depend on what is registered
        pick = idx if len(idx) <= 60 else [idx[i] for i in np.linspace(0, len(idx) - 1, 60).astype(int)]
        ds = self.dataset
        parts = [type(ds).__name__, ds.K, list(ds.image_size), getattr(ds, "depth_scale", None),
                 None if self.calib is None else self.calib.to_dict(), self.image_size, N_ANCHORS,
                 [[i, file_id(self._frames[i].depth_path), self._frames[i].T_world_cam] for i in pick]]
        return memo(entry_name("anchors", parts), lambda: {"anchors": self._kmeans_anchors(pick)})["anchors"]

    def _kmeans_anchors(self, pick: list[int]) -> np.ndarray:
        import faiss

        rng = np.random.default_rng(0)
        pts = []
        for i in pick:
            Xw = self.frame(i).points_world().reshape(-1, 3)
            pts.append(Xw[rng.choice(len(Xw), 2000, replace=False)])
        P = np.ascontiguousarray(np.concatenate(pts), dtype=np.float32)
        km = faiss.Kmeans(3, min(N_ANCHORS, len(P) // 40), niter=25, seed=0, verbose=False)
        km.train(P)
        return np.asarray(km.centroids, np.float64)

    def patch_tokens(self, index: int) -> np.ndarray:
        """[N_patches, N_ANCHORS] float32: soft assignment of each 16x16 patch's world point to the
        anchors (unit L2 per token). Mean-pooled over an image it is a soft histogram of the scene
        regions the image sees, so cosine similarity measures view overlap, as retrieval needs."""
        Xw = self.frame(index).points_world()[8::16, 8::16].reshape(-1, 3)
        d2 = ((Xw[:, None, :] - self.anchors[None]) ** 2).sum(-1)
        w = np.exp(-0.5 * d2 / ANCHOR_SIGMA_M**2)
        tok = np.zeros((len(Xw), N_ANCHORS), np.float32)
        tok[:, : w.shape[1]] = w / np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-12)
        return tok
