"""Our network reproduces the official MASt3R outputs stored in mast3r_tiny_io.npz."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import PIL.Image
import pytest
import torch

from mast3r_ros.model import Mast3rModel, preprocess_array

PAIRS = ["pair0", "pair1", "pair2"]
OUTPUT_KEYS = ["pts3d", "conf", "desc", "desc_conf"]


def assert_close(ours, ref, what: str):
    """The issue's tolerance: |ours - official| <= 1e-4 * (1 + |official|), element-wise."""
    ours = np.asarray(ours, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape} vs {ref.shape}"
    excess = np.abs(ours - ref) - 1e-4 * (1 + np.abs(ref))
    worst = np.unravel_index(excess.argmax(), ref.shape)
    assert excess.max() <= 0, f"{what}: worst excess {excess.max():.3g} at {worst}"


def fixture_rgb(tensor: np.ndarray) -> np.ndarray:
    """Recover the uint8 RGB crop the official loader normalised ((u8/255 - 0.5)/0.5 is invertible)."""
    return np.round((tensor[0] * 0.5 + 0.5) * 255).astype(np.uint8).transpose(1, 2, 0)


@pytest.fixture(scope="module")
def model(tiny_checkpoint):
    torch.set_num_threads(2)
    return Mast3rModel.from_checkpoint(tiny_checkpoint)


@pytest.fixture(scope="module")
def runs(model, tiny_io):
    """Encoder, decoder layers and head outputs of every fixture pair."""
    out = {}
    for p in PAIRS:
        enc1 = model.encode(torch.from_numpy(tiny_io[f"{p}_img1"]))
        enc2 = model.encode(torch.from_numpy(tiny_io[f"{p}_img2"]))
        with torch.inference_mode():
            dec1, dec2 = model.net.decode(enc1, enc2)
        pred1, pred2 = model.infer(enc1, enc2)
        out[p] = dict(enc1=enc1, enc2=enc2, dec1=dec1, dec2=dec2, pred1=pred1, pred2=pred2)
    return out


@pytest.mark.parametrize("pair", PAIRS)
def test_preprocessing_reproduces_official_inputs_exactly(pair, tiny_io):
    for view in ("1", "2"):
        ref = tiny_io[f"{pair}_img{view}"]
        net_img = preprocess_array(fixture_rgb(ref))
        assert np.array_equal(net_img.tensor.numpy(), ref)
        assert net_img.true_shape == tuple(tiny_io[f"{pair}_true_shape{view}"][0])


@pytest.mark.parametrize("pair", PAIRS)
def test_encoder_matches_official(pair, runs, tiny_io):
    r = runs[pair]
    for view in ("1", "2"):
        assert np.array_equal(r[f"enc{view}"].positions.numpy(), tiny_io[f"{pair}_dbg_pos{view}"])
        assert_close(r[f"enc{view}"].tokens, tiny_io[f"{pair}_dbg_enc{view}"], f"{pair} enc{view}")


@pytest.mark.parametrize("pair", PAIRS)
def test_decoder_matches_official(pair, runs, tiny_io):
    r = runs[pair]
    for view in ("1", "2"):
        assert_close(r[f"dec{view}"][-1], tiny_io[f"{pair}_dbg_declast{view}"], f"{pair} declast{view}")
    if pair == "pair0":
        for k in range(1, 11):
            for view in ("1", "2"):
                assert_close(r[f"dec{view}"][k], tiny_io[f"pair0_dbg_dec{view}_layer{k:02d}"], f"dec{view} layer {k}")


@pytest.mark.parametrize("pair", PAIRS)
def test_head_outputs_match_official(pair, runs, tiny_io):
    r = runs[pair]
    for key in OUTPUT_KEYS:
        assert_close(r["pred1"][key][:, ::3, ::3], tiny_io[f"{pair}_pred1_{key}_s3"], f"{pair} pred1 {key}")
        name2 = "pts3d_in_other_view" if key == "pts3d" else key
        assert_close(r["pred2"][key][:, ::3, ::3], tiny_io[f"{pair}_pred2_{name2}_s3"], f"{pair} pred2 {key}")


def test_descriptors_are_unit_norm(runs):
    desc = runs["pair0"]["pred1"]["desc"]
    assert torch.allclose(desc.norm(dim=-1), torch.ones(()), atol=1e-5)


def test_partial_heads_and_batches_equal_full_run(model, runs, tiny_io):
    """Skipping heads or batching pairs must not change any number."""
    r = runs["pair1"]
    pred1, pred2 = model.infer(r["enc1"], r["enc2"], heads1={"desc"}, heads2=set())
    assert set(pred1) == {"desc", "desc_conf"} and pred2 == {}
    assert torch.equal(pred1["desc"], r["pred1"]["desc"])
    img1 = torch.from_numpy(tiny_io["pair1_img1"])
    img2 = torch.from_numpy(tiny_io["pair1_img2"])
    batch1, batch2 = model.infer_pair(torch.cat([img1, img2]), torch.cat([img2, img1]),
                                      heads1={"pts3d"}, heads2={"pts3d"})
    assert_close(batch1["pts3d"][:1], r["pred1"]["pts3d"], "batched pts3d view1")
    assert_close(batch2["pts3d"][:1], r["pred2"]["pts3d"], "batched pts3d view2")


def test_infer_pair_command_writes_official_arrays(tiny_checkpoint, tiny_io, tmp_path):
    """The CLI on image files (mixed orientation pair) gives the official names, shapes and numbers."""
    paths = []
    for view in ("1", "2"):
        path = tmp_path / f"view{view}.png"
        PIL.Image.fromarray(fixture_rgb(tiny_io[f"pair2_img{view}"])).save(path)
        paths.append(str(path))
    out = tmp_path / "out.npz"
    subprocess.run([sys.executable, "-m", "mast3r_ros.cli", "infer-pair", "--checkpoint", str(tiny_checkpoint),
                    *paths, "--out", str(out)], check=True)
    z = np.load(out)
    assert set(z.files) == {"img1", "img2", "pred1_pts3d", "pred1_conf", "pred1_desc", "pred1_desc_conf",
                            "pred2_pts3d_in_other_view", "pred2_conf", "pred2_desc", "pred2_desc_conf"}
    assert np.array_equal(z["img1"], tiny_io["pair2_img1"]) and np.array_equal(z["img2"], tiny_io["pair2_img2"])
    assert z["pred1_desc"].shape == (1, 384, 512, 24) and z["pred2_desc"].shape == (1, 512, 384, 24)
    for name in ("pred1_pts3d", "pred2_pts3d_in_other_view", "pred2_desc_conf"):
        assert_close(z[name][:, ::3, ::3], tiny_io[f"pair2_{name}_s3"], name)
