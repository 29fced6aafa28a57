"""The oracle model answers coarse-to-fine crops (unresized windows of registered 7-Scenes frames at any
offset) with the frame's true geometry in the crop's own pixels, computed here independently from the
dataset's depth, intrinsics and poses; other windows and unregistered images are refused."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mast3r_ros.datasets.readers import open_dataset
from mast3r_ros.matching.coarse_to_fine import normalize_rgb
from mast3r_ros.model import preprocess_array
from mast3r_ros.model.oracle import OracleModel, OracleNoise
from mast3r_ros.model.oracle_scene import OracleError

EXACT = OracleNoise(depth_rel=0, pair_scale=0, view_scale=0, rel_rot_deg=0, rel_trans=0, desc_outliers=0,
                    desc_noise=0)
A, B = 0, 30          # two registered frames that see the same part of the kitchen


@pytest.fixture(scope="module")
def kitchen(data_dir):
    return open_dataset(data_dir / "7scenes_redkitchen")


@pytest.fixture(scope="module")
def model(kitchen):
    return OracleModel.from_dataset(kitchen, EXACT, frames=[A, B, 60])


def _frame(kitchen, i):
    return kitchen.frames(f"{i}:{i + 1}")[0]


def _crop(kitchen, i, x0, y0, w=512, h=384):
    rgb = kitchen.load_rgb(_frame(kitchen, i))
    return normalize_rgb([rgb[y0:y0 + h, x0:x0 + w]])


def _true_points_cam(kitchen, i, x0, y0, w=512, h=384):
    """[h, w, 3] camera points of the crop's pixels (sensor depth back-projected with the dataset K), and
    the measured mask."""
    z = kitchen.load_depth(_frame(kitchen, i))[y0:y0 + h, x0:x0 + w].astype(np.float64)
    y, x = np.mgrid[y0:y0 + h, x0:x0 + w].astype(np.float64)
    K = kitchen.K
    X = np.stack([(x - K[0, 2]) / K[0, 0] * z, (y - K[1, 2]) / K[1, 1] * z, z], -1)
    return X, z > 0


@pytest.mark.parametrize("offset", [(0, 0), (128, 96), (37, 53)])
def test_crop_gets_the_frames_true_geometry_in_its_pixels(kitchen, model, offset):
    x0, y0 = offset
    enc_crop = model.encode(_crop(kitchen, A, x0, y0))
    assert model.source.crop_box(model.frame_index(enc_crop, 0)) == (A, (x0, y0, x0 + 512, y0 + 384))
    enc_b = model.encode(preprocess_array(kitchen.load_rgb(_frame(kitchen, B))).tensor)
    p1, p2 = model.infer(enc_crop, enc_b)
    X, m = _true_points_cam(kitchen, A, x0, y0)
    assert p1["pts3d"].shape == (1, 384, 512, 3) and p1["desc"].shape == (1, 384, 512, 24)
    np.testing.assert_allclose(p1["pts3d"][0].numpy()[m], X[m], atol=2e-7)  # measured max 6e-8 m (float32)
    # the crop as view 2: its points in camera 1 (frame B) are the true ones moved by T_B_A
    p1b, p2b = model.infer(enc_b, enc_crop)
    T = np.linalg.inv(_frame(kitchen, B).T_world_cam) @ _frame(kitchen, A).T_world_cam
    np.testing.assert_allclose(p2b["pts3d"][0].numpy()[m], X[m] @ T[:3, :3].T + T[:3, 3], atol=2e-7)  # 1.2e-7
    # descriptors: the stand-in's descriptor field at the crop pixels' true world points
    Ta = _frame(kitchen, A).T_world_cam
    Xw = X[::7, ::7] @ Ta[:3, :3].T + Ta[:3, 3]
    want = model.source.field(Xw[m[::7, ::7]]).numpy()
    np.testing.assert_allclose(p1["desc"][0].numpy()[::7, ::7][m[::7, ::7]], want, atol=1e-7)  # measured 3e-8


def test_crops_that_are_no_window_of_a_registered_frame_are_refused(kitchen, model):
    shifted = _crop(kitchen, A, 10, 10)
    shifted[..., 5, 5] = -shifted[..., 5, 5]                      # one pixel changed: no exact window
    with pytest.raises(OracleError, match="not a registered frame"):
        model.encode(shifted)
    with pytest.raises(OracleError, match="not a registered frame"):
        model.encode(_crop(kitchen, 90, 20, 20))                   # frame 90 is not registered
    with pytest.raises(OracleError, match="not a registered frame"):
        model.encode(torch.zeros(1, 3, 384, 512))


def test_a_crop_gets_the_same_prediction_whatever_was_seen_before(kitchen):
    """Noise is seeded by (frame, window): the order crops are first seen in changes nothing."""
    noisy = [OracleModel.from_dataset(kitchen, OracleNoise(), frames=[A, B]) for _ in range(2)]
    c1, c2 = _crop(kitchen, A, 37, 53), _crop(kitchen, B, 100, 20)
    noisy[1].encode(_crop(kitchen, A, 5, 5))                # another crop first: other view ids
    outs = [m.infer(m.encode(c1), m.encode(c2)) for m in noisy]
    for k in ("pts3d", "desc", "conf"):
        assert torch.equal(outs[0][0][k], outs[1][0][k]) and torch.equal(outs[0][1][k], outs[1][1][k])
