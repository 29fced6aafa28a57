"""Preprocessing: official sizes/crops, exact pixel-centre mapping back to the original, EXIF, errors."""
from __future__ import annotations

import numpy as np
import PIL.Image
import pytest

from mast3r_ros.model import preprocess_array, preprocess_file
from mast3r_ros.model.preprocess import _resize_and_crop


@pytest.mark.parametrize("wh,resized,crop,net", [
    ((640, 480), (512, 384), (0, 0), (512, 384)),       # 7-Scenes
    ((1334, 1000), (512, 384), (0, 0), (512, 384)),     # NLE_tower landscape: round(383.8) = 384
    ((1000, 1334), (384, 512), (0, 0), (384, 512)),     # portrait
    ((600, 600), (512, 512), (0, 64), (512, 384)),      # square -> cropped to 4:3
    ((700, 300), (512, 219), (0, 5), (512, 208)),       # odd height: centre crop to a multiple of 16
    ((3072, 2048), (512, 341), (0, 2), (512, 336)),     # Strecha fountain
    ((320, 200), (512, 320), (0, 0), (512, 320)),       # upscaled (BICUBIC)
])
def test_sizes_and_crops_follow_official_rules(wh, resized, crop, net):
    img = PIL.Image.new("RGB", wh, (10, 20, 30))
    out, tf = _resize_and_crop(img, 512)
    assert tf.resized_wh == resized and tf.crop_xy0 == crop and out.size == net == tf.network_wh
    ni = preprocess_array(np.zeros((wh[1], wh[0], 3), np.uint8))
    assert ni.tensor.shape == (1, 3, net[1], net[0]) and ni.true_shape == (net[1], net[0])


def official_recipe(rgb: np.ndarray, resized_wh: tuple[int, int], crop_xy0: tuple[int, int],
                    net_wh: tuple[int, int], filt) -> np.ndarray:
    """The official loader's steps as the fixture README spells them, with the sizes written out by hand:
    PIL resize to ``resized_wh`` with ``filt``, crop ``net_wh`` at ``crop_xy0``, (u8/255 - 0.5)/0.5, CHW."""
    resized = np.asarray(PIL.Image.fromarray(rgb).resize(resized_wh, filt))
    (x0, y0), (w, h) = crop_xy0, net_wh
    crop = resized[y0:y0 + h, x0:x0 + w].astype(np.float32)
    return ((crop / 255 - 0.5) / 0.5).transpose(2, 0, 1)[None]


@pytest.mark.parametrize("source,rotate,resized,crop,net,filt", [
    ("strecha", False, (512, 341), (0, 2), (512, 336), PIL.Image.LANCZOS),    # 3072x2048: shrink + crop
    ("strecha", True, (341, 512), (2, 0), (336, 512), PIL.Image.LANCZOS),     # portrait
    ("7scenes", False, (512, 384), (0, 0), (512, 384), PIL.Image.LANCZOS),    # 640x480
    ("7scenes_small", False, (512, 384), (0, 0), (512, 384), PIL.Image.BICUBIC),  # 320x240: upscaled
])
def test_resized_pixels_follow_the_official_recipe(data_dir, source, rotate, resized, crop, net, filt):
    """Real photographs through preprocess_array equal, bit for bit, the official recipe applied by hand."""
    if source == "strecha":
        path = data_dir / "strecha_fountain_p11/Benchmarking_Camera_Calibration_2008/fountain-P11/images/0004.jpg"
    else:
        path = data_dir / "7scenes_redkitchen/data/frame-000000.color.jpg"
    rgb = np.asarray(PIL.Image.open(path).convert("RGB"))
    if source == "7scenes_small":
        rgb = rgb[::2, ::2]
    if rotate:
        rgb = np.ascontiguousarray(np.rot90(rgb))
    ours = preprocess_array(rgb)
    assert ours.transform.resized_wh == resized and ours.transform.crop_xy0 == crop
    assert np.array_equal(ours.tensor.numpy(), official_recipe(rgb, resized, crop, net, filt))


@pytest.mark.parametrize("wh", [(640, 480), (1000, 700), (480, 640), (300, 300)])
def test_network_pixels_map_back_to_original_pixel_centres(wh):
    """On a float image whose value is its own x (then y) coordinate, every interior network pixel must
    read the original coordinate that ``network_to_original`` predicts (resampling is exact on ramps)."""
    w, h = wh
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    for axis, ramp in ((0, xs), (1, ys)):
        out, tf = _resize_and_crop(PIL.Image.fromarray(ramp, mode="F"), 512)
        values = np.asarray(out, dtype=np.float64)
        hn, wn = values.shape
        xn, yn = np.meshgrid(np.arange(wn), np.arange(hn))
        mapped = tf.network_to_original(np.stack([xn.ravel(), yn.ravel()], 1))[:, axis].reshape(hn, wn)
        inner = (slice(8, hn - 8), slice(8, wn - 8))
        # LANCZOS leaves ripple (measured 2.08e-3 px at most); a convention error would be >= 0.25 px.
        np.testing.assert_allclose(values[inner], mapped[inner], rtol=0, atol=2.5e-3)
        back = tf.original_to_network(tf.network_to_original(np.array([[3.0, 7.0]])))
        np.testing.assert_allclose(back, [[3.0, 7.0]], rtol=0, atol=1e-12)  # measured 0


def test_intrinsics_follow_the_pixel_mapping():
    """A 3D point projects to the same place through K_network as through K then the pixel map."""
    ni = preprocess_array(np.zeros((480, 640, 3), np.uint8))
    K = np.array([[585.0, 0, 320], [0, 585, 240], [0, 0, 1]])
    Kn = ni.transform.intrinsics_to_network(K)
    pts = np.array([[0.3, -0.2, 2.0], [-1.0, 0.5, 3.0]])
    uv = (pts @ K.T)[:, :2] / pts[:, 2:]
    uvn = (pts @ Kn.T)[:, :2] / pts[:, 2:]
    np.testing.assert_allclose(ni.transform.original_to_network(uv), uvn, rtol=0, atol=1e-12)  # measured 5.7e-14


def test_exif_orientation_is_applied(tmp_path):
    rng = np.random.default_rng(0)
    stored = (rng.random((48, 64, 3)) * 255).astype(np.uint8)  # stored landscape, displayed portrait
    exif = PIL.Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    path = tmp_path / "rotated.png"
    PIL.Image.fromarray(stored).save(path, exif=exif)
    upright = np.rot90(stored, k=-1)  # clockwise, by hand (independent of PIL's exif_transpose)
    ours = preprocess_file(path)
    assert ours.true_shape == (512, 384)
    assert np.array_equal(ours.tensor.numpy(), preprocess_array(np.ascontiguousarray(upright)).tensor.numpy())


def test_bad_inputs_name_the_problem(tmp_path):
    junk = tmp_path / "notanimage.jpg"
    junk.write_text("hello")
    with pytest.raises(ValueError, match="cannot read image .*notanimage.jpg"):
        preprocess_file(junk)
    with pytest.raises(ValueError, match="uint8 RGB"):
        preprocess_array(np.zeros((10, 10), np.float32))
    with pytest.raises(ValueError, match="too small"):
        preprocess_array(np.zeros((4, 1000, 3), np.uint8))
