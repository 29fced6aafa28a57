"""Image preprocessing identical to the official loader, plus the map back to original pixels.

Steps (as ``dust3r.utils.image.load_images(size=512)``): EXIF orientation applied, RGB, long side
resized to 512 (each side ``round(side * 512 / long_side)``, LANCZOS when shrinking, BICUBIC
otherwise), centre crop to multiples of 16 (a square image is cropped to 4:3), then
``(u8 / 255 - 0.5) / 0.5``.

Pixel convention: integer pixel coordinates (x, y) are pixel centres, in the original image after
EXIF orientation. A network pixel (xn, yn) maps to ``x = (xn + crop_x0 + 0.5) * sx - 0.5`` with
``sx = W_orig / W_resized`` (likewise y).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageOps
import torch

from mast3r_ros.datasets.image_files import check_pixels, open_image, to_rgb8

PATCH = 16
MAX_LONG_SIDE = 4096  # network image long side (pixels); released models use 512


@dataclass(frozen=True)
class ImageTransform:
    """Original image -> network image: resize to ``resized_wh`` then crop at ``crop_xy0``."""

    original_wh: tuple[int, int]
    resized_wh: tuple[int, int]
    crop_xy0: tuple[int, int]
    network_wh: tuple[int, int]

    @property
    def scale_xy(self) -> np.ndarray:
        """Original pixels per resized pixel, (sx, sy)."""
        return np.array(self.original_wh, float) / np.array(self.resized_wh, float)

    def network_to_original(self, xy: np.ndarray) -> np.ndarray:
        """[N, 2] network (x, y) -> [N, 2] float64 original (x, y), pixel centres."""
        xy = np.asarray(xy, dtype=np.float64)
        return (xy + np.array(self.crop_xy0) + 0.5) * self.scale_xy - 0.5

    def nearest_original_pixels(self) -> np.ndarray:
        """[Hn*Wn, 2] int64 original pixel (x, y) nearest each network pixel centre, row-major over the
        network image (index ``y * Wn + x``), clipped to the original image."""
        wn, hn = self.network_wh
        xn, yn = np.meshgrid(np.arange(wn), np.arange(hn))
        xy = np.rint(self.network_to_original(np.stack([xn.ravel(), yn.ravel()], 1))).astype(np.int64)
        return np.clip(xy, 0, np.array(self.original_wh) - 1)

    def original_to_network(self, xy: np.ndarray) -> np.ndarray:
        xy = np.asarray(xy, dtype=np.float64)
        return (xy + 0.5) / self.scale_xy - 0.5 - np.array(self.crop_xy0)

    def intrinsics_to_network(self, K: np.ndarray) -> np.ndarray:
        """K [3, 3] of the original image -> K of the network image (same pixel-centre convention)."""
        K = np.asarray(K, dtype=np.float64)
        if K.shape != (3, 3):
            raise ValueError(f"intrinsics must be [3, 3], got {K.shape}")
        sx, sy = self.scale_xy
        out = K.copy()
        out[0, :] /= sx
        out[1, :] /= sy
        out[0, 2] = (K[0, 2] + 0.5) / sx - 0.5 - self.crop_xy0[0]
        out[1, 2] = (K[1, 2] + 0.5) / sy - 0.5 - self.crop_xy0[1]
        out[2] = (0, 0, 1)
        return out

    def intrinsics_to_original(self, K_net: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`intrinsics_to_network`: K [3, 3] of the network image -> K of the original."""
        K_net = np.asarray(K_net, dtype=np.float64)
        sx, sy = self.scale_xy
        K = K_net.copy()
        K[0, :2] *= sx
        K[1, :2] *= sy
        K[0, 2] = (K_net[0, 2] + self.crop_xy0[0] + 0.5) * sx - 0.5
        K[1, 2] = (K_net[1, 2] + self.crop_xy0[1] + 0.5) * sy - 0.5
        return K

    def to_array(self) -> np.ndarray:
        """[8] int64: original W,H; resized W,H; crop x0,y0; network W,H (a map's ``mast3r_tf``)."""
        return np.array([*self.original_wh, *self.resized_wh, *self.crop_xy0, *self.network_wh], dtype=np.int64)

    @classmethod
    def from_array(cls, a: np.ndarray) -> "ImageTransform":
        """Inverse of :meth:`to_array`; ValueError unless ``a`` holds 8 integers."""
        v = [int(x) for x in np.asarray(a).ravel()]
        if len(v) != 8:
            raise ValueError(f"mast3r_tf must hold 8 integers, got {len(v)}")
        return cls((v[0], v[1]), (v[2], v[3]), (v[4], v[5]), (v[6], v[7]))


@dataclass
class NetworkImage:
    """tensor: [1, 3, H, W] float32 in [-1, 1], RGB. true_shape: (H, W). transform: back to the original."""

    tensor: torch.Tensor
    true_shape: tuple[int, int]
    transform: ImageTransform


def _resize_and_crop(img: PIL.Image.Image, long_side: int) -> tuple[PIL.Image.Image, ImageTransform]:
    w1, h1 = img.size
    s = max(w1, h1)
    interp = PIL.Image.LANCZOS if s > long_side else PIL.Image.BICUBIC
    resized_wh = tuple(int(round(v * long_side / s)) for v in (w1, h1))
    img = img.resize(resized_wh, interp)
    w, h = img.size
    cx, cy = w // 2, h // 2
    halfw = ((2 * cx) // PATCH) * PATCH / 2
    halfh = ((2 * cy) // PATCH) * PATCH / 2
    if w == h:
        halfh = 3 * halfw / 4
    box = tuple(int(round(v)) for v in (cx - halfw, cy - halfh, cx + halfw, cy + halfh))
    img = img.crop(box)
    return img, ImageTransform((w1, h1), resized_wh, (box[0], box[1]), img.size)


def to_network_tensor(rgb: np.ndarray) -> torch.Tensor:
    """[H, W, 3] uint8 RGB -> [1, 3, H, W] float32, (u8/255 - 0.5)/0.5 in the reference's arithmetic."""
    t = torch.from_numpy(np.array(rgb, dtype=np.uint8, copy=True)).permute(2, 0, 1).float().div(255)
    return t.sub(0.5).div(0.5)[None]


def preprocess_pil(img: PIL.Image.Image, long_side: int = 512) -> NetworkImage:
    if not PATCH <= long_side <= MAX_LONG_SIDE:
        raise ValueError(f"long side {long_side} px: must be in [{PATCH}, {MAX_LONG_SIDE}] (one {PATCH}-px patch "
                         "at least)")
    check_pixels("image", img.size)
    img = to_rgb8(img)
    if min(img.size) < 1:
        raise ValueError("empty image")
    cropped, transform = _resize_and_crop(img, long_side)
    if min(cropped.size) < PATCH:
        w, h = img.size
        raise ValueError(f"image {w}x{h} becomes {cropped.size[0]}x{cropped.size[1]} at long side {long_side}, "
                         f"too small: the network needs at least {PATCH} px per side")
    tensor = to_network_tensor(np.asarray(cropped))
    return NetworkImage(tensor, (cropped.size[1], cropped.size[0]), transform)


def preprocess_file(path: str | Path, long_side: int = 512) -> NetworkImage:
    """Load an image file (EXIF orientation applied) and preprocess it for the network."""
    with open_image(path) as img:  # ValueError naming the file: unreadable, too many pixels
        try:
            img = PIL.ImageOps.exif_transpose(img)
            img.load()
        except (OSError, ValueError, SyntaxError, PIL.UnidentifiedImageError) as exc:
            raise ValueError(f"cannot read image {path}: {' '.join(str(exc).split())}") from None
    try:
        return preprocess_pil(img, long_side)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def preprocess_array(rgb: np.ndarray, long_side: int = 512) -> NetworkImage:
    """Preprocess an [H, W, 3] uint8 RGB array (what an Image message decodes to)."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an [H, W, 3] uint8 RGB array, got shape {rgb.shape} dtype {rgb.dtype}")
    return preprocess_pil(PIL.Image.fromarray(rgb), long_side)
