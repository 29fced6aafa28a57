"""Coarse-to-fine pipeline with a synthetic network (coordinate mapping checked end to end)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from mast3r_ros.matching import CoarseToFineConfig, MatchingConfig, coarse_to_fine_match, working_resolution
from mast3r_ros.matching.coarse_to_fine import map_to_full, normalize_rgb, resize_rgb

SHIFT = np.array([37, 23])  # img_ref(x, y) = img_q(x + 37, y + 23)


def texture(H, W, rng):
    """uint8 RGB texture with coarse (sigma 8 px) and fine (sigma 2 px) content."""
    coarse = gaussian_filter(rng.standard_normal((H, W, 3)), sigma=(8, 8, 0))
    fine = gaussian_filter(rng.standard_normal((H, W, 3)), sigma=(2, 2, 0))
    img = coarse / coarse.std() * 40 + fine / fine.std() * 25 + 128
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


class PatchNet:
    """Deterministic stand-in for the network: descriptor = L2-normalised fixed random projection of
    the 5x5 RGB neighbourhood of the image blurred by a 5x5 binomial kernel (a function of the image
    content around each pixel, hence of the full-image position for a fixed texture; the blur makes it
    robust to the resampling of the coarse pass); confidence = 1 + local contrast. Records its inputs."""

    def __init__(self, dim=8):
        g = torch.Generator().manual_seed(0)
        self.w = torch.randn(dim, 3, 5, 5, generator=g)
        b = torch.tensor([1.0, 4, 6, 4, 1])
        self.blur = (b[:, None] * b[None] / 256).expand(3, 1, 5, 5).contiguous()
        self.calls = []

    def __call__(self, imgs_q, imgs_ref):
        self.calls.append((tuple(imgs_q.shape), tuple(imgs_ref.shape)))
        out = []
        for x in (imgs_q, imgs_ref):
            assert x.dtype == torch.float32 and x.min() >= -1 and x.max() <= 1
            pad = torch.nn.functional.pad(x, (4,) * 4, mode="replicate")
            d = torch.nn.functional.conv2d(torch.nn.functional.conv2d(pad, self.blur, groups=3), self.w)
            d = d / d.norm(dim=1, keepdim=True)
            out += [d.permute(0, 2, 3, 1).contiguous(), 1 + x.std(dim=1)]
        return out[0], out[1], out[2], out[3]


@pytest.fixture(scope="module")
def images():
    tex = texture(530, 700, np.random.default_rng(0))
    img_q = tex[:480, :640]                     # 640x480 -> working resolution 512x384 (scale 1.25)
    img_ref = tex[SHIFT[1]:SHIFT[1] + 480, SHIFT[0]:SHIFT[0] + 640]
    return np.ascontiguousarray(img_q), np.ascontiguousarray(img_ref)


def test_coarse_to_fine_recovers_shift(images):
    img_q, img_ref = images
    net = PatchNet()
    cfg = CoarseToFineConfig(batch_size=3, matching=MatchingConfig(subsample=16, border=5))
    xy_q, xy_r, conf = coarse_to_fine_match(img_q, img_ref, net, cfg)
    # first call = coarse pass at the working resolution, then batches of crops at the same resolution
    assert net.calls[0] == ((1, 3, 384, 512), (1, 3, 384, 512))
    assert len(net.calls) >= 2 and all(c[0][1:] == (3, 384, 512) for c in net.calls[1:])
    assert xy_q.dtype == np.int64 and xy_q.shape == xy_r.shape and conf.shape == (len(xy_q),)
    assert len(xy_q) >= 4000         # measured 4072: crop pairs at full resolution, far more than the coarse pass
    # full-resolution correspondences: ref pixel = q pixel - shift, exactly; measured 99.34 % (the other
    # 27 are wrong matches of the stand-in descriptor, none of them within 1 px)
    exact = (xy_q - xy_r == SHIFT).all(axis=1)
    assert exact.mean() >= 0.99
    flat = xy_q[:, 1] * 640 + xy_q[:, 0]
    assert np.all(np.diff(flat) >= 0)
    assert len(np.unique(np.c_[xy_q, xy_r], axis=0)) == len(xy_q)


def test_small_images_fall_back_to_coarse(images):
    """Images smaller than the working resolution: one pass, matches mapped back with the scale formula."""
    img_q, img_ref = np.ascontiguousarray(images[0][:300, :400]), np.ascontiguousarray(images[1][:300, :400])
    net = PatchNet()
    xy_q, xy_r, _ = coarse_to_fine_match(img_q, img_ref, net, CoarseToFineConfig(matching=MatchingConfig(subsample=8)))
    assert len(net.calls) == 1 and net.calls[0][0] == (1, 3, 384, 512)   # 400x300 -> 512x384 (enlarged)
    overlap = (xy_q[:, 0] >= SHIFT[0]) & (xy_q[:, 1] >= SHIFT[1])       # q pixels visible in ref
    assert overlap.mean() > 0.95 and len(xy_q) >= 6000  # measured 95.5 % of 6048
    # resampled by 1.28 and mapped back: mostly within 2 px of the true correspondence (measured 91.99 %),
    # without bias (median error measured 0 px on both axes)
    err = (xy_q - xy_r - SHIFT)[overlap]
    assert np.mean((np.abs(err) <= 2).all(axis=1)) >= 0.915
    assert np.all(np.median(err, axis=0) == 0)


def test_pixel_mapping_convention():
    # a 512-px-wide rendering of a 1600-px box starting at x0 = 100: pixel centres map as documented
    xy = np.array([[0, 0], [511, 383], [255, 100]])
    full = map_to_full(xy, (100, 50, 1700, 1250), (384, 512))
    np.testing.assert_allclose(full[:, 0], 100 + (xy[:, 0] + 0.5) * 1600 / 512 - 0.5)
    np.testing.assert_allclose(full[:, 1], 50 + (xy[:, 1] + 0.5) * 1200 / 384 - 0.5)
    # identity size: integer shift
    np.testing.assert_allclose(map_to_full(xy, (7, 9, 519, 393), (384, 512)), xy + [7, 9])


def test_normalisation_and_resize():
    img = np.arange(24 * 32 * 3, dtype=np.int64).reshape(24, 32, 3).astype(np.uint8)
    t = normalize_rgb([img])
    assert t.shape == (1, 3, 24, 32)
    # the official transforms in float32 (ToTensor: / 255, Normalize: (x - 0.5) / 0.5), bit for bit
    f32 = np.float32
    np.testing.assert_array_equal(t[0].permute(1, 2, 0).numpy(), (img.astype(f32) / f32(255) - f32(0.5)) / f32(0.5))
    assert resize_rgb(img, (12, 16)).shape == (12, 16, 3)
    assert resize_rgb(img, (24, 32)) is img


def test_working_resolution_table():
    assert working_resolution(1200, 1600) == (384, 512)
    assert working_resolution(1080, 1920) == (288, 512)
    assert working_resolution(1600, 1200) == (512, 384)
    assert working_resolution(500, 1600) == (160, 512)


def test_bad_inputs(images):
    img_q, img_ref = images
    net = PatchNet()
    with pytest.raises(ValueError, match="uint8 RGB"):
        coarse_to_fine_match(img_q.astype(np.float32), img_ref, net)
    with pytest.raises(ValueError, match="infer output"):
        coarse_to_fine_match(img_q, img_ref, lambda a, b: (torch.zeros(1, 2, 2, 8), torch.zeros(1, 2, 2),
                                                            torch.zeros(1, 2, 2, 8), torch.zeros(1, 2, 2)))
    with pytest.raises(ValueError, match="overlap"):
        CoarseToFineConfig(overlap=1.0)
