"""bf16 weight copy (InferenceConfig.bf16_weights): the weights autocast casts are cast once, and the
outputs are those of bf16 autocast on the float32 weights, bit for bit (fixture checkpoint)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from mast3r_ros.model import InferenceConfig, Mast3rModel
from mast3r_ros.model.precision import output_differences


@pytest.fixture(scope="module")
def models(tiny_checkpoint):
    torch.set_num_threads(2)
    fp32 = Mast3rModel.from_checkpoint(tiny_checkpoint)
    amp = Mast3rModel(fp32.net, InferenceConfig(amp_dtype="bf16"))
    copy = Mast3rModel(fp32.net, InferenceConfig(amp_dtype="bf16", bf16_weights=True))
    return fp32, amp, copy


def test_copy_holds_bf16_matmul_and_conv_weights_and_leaves_the_source_float32(models):
    fp32, _, copy = models
    assert copy.net is not fp32.net
    assert {p.dtype for p in fp32.net.parameters()} == {torch.float32}
    source = dict(fp32.net.named_parameters())
    n_low = 0
    for name, module in copy.net.named_modules():
        low = isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d))
        for pname, p in module.named_parameters(recurse=False):
            ref = source[f"{name}.{pname}" if name else pname]
            assert p.dtype == (torch.bfloat16 if low else torch.float32), (name, pname, p.dtype)
            # cast once, round to nearest: the value autocast would use
            assert torch.equal(p, ref.to(p.dtype)), (name, pname)
            n_low += low
    assert n_low > 0
    assert any(isinstance(m, nn.LayerNorm) for m in copy.net.modules())


@pytest.mark.parametrize("pair", [0, 1])   # landscape 512x384, portrait 384x512
def test_outputs_equal_bf16_autocast_exactly_and_stay_near_fp32(models, tiny_io, pair):
    fp32, amp, copy = models
    img1, img2 = torch.from_numpy(tiny_io[f"pair{pair}_img1"]), torch.from_numpy(tiny_io[f"pair{pair}_img2"])
    ref, auto, out = fp32.infer_pair(img1, img2), amp.infer_pair(img1, img2), copy.infer_pair(img1, img2)
    for view in (0, 1):
        for key in ("pts3d", "conf", "desc", "desc_conf"):
            assert out[view][key].dtype == torch.float32, key
            # measured: identical on the fixture's three pairs (the same bf16 weights, the same kernels)
            assert torch.equal(out[view][key], auto[view][key]), (pair, view, key)
        diff = output_differences(ref[view], out[view])
        # Measured on the three pairs, both views: pts3d median 0.73-1.13 %, p99 1.9-2.8 %;
        # desc cosine median 0.99996, min >= 0.99965 (the same as autocast: test_model_amp.py)
        assert diff["pts3d_rel_median"] <= 0.015, diff
        assert diff["pts3d_rel_p99"] <= 0.035, diff
        assert diff["desc_cos_median"] >= 0.9999, diff
        assert diff["desc_cos_min"] >= 0.999, diff
        assert diff["pts3d_rel_median"] > 1e-5, diff   # it is not float32


def test_encode_then_infer_on_cached_float32_tokens(models, tiny_io):
    """Keyframe tokens come back from a map as float32: decoding them against the copy works."""
    _, amp, copy = models
    img = torch.from_numpy(tiny_io["pair0_img1"])
    enc = copy.encode(img)
    enc.tokens = enc.tokens.float()
    a = copy.infer(enc, enc, heads1={"desc"}, heads2=set())[0]
    b = amp.infer(enc, enc, heads1={"desc"}, heads2=set())[0]
    assert torch.equal(a["desc"], b["desc"])


def test_bf16_weights_without_bf16_precision_is_refused():
    with pytest.raises(ValueError, match="bf16_weights needs bf16 precision"):
        InferenceConfig(amp_dtype="fp32", bf16_weights=True).validate()
    with pytest.raises(ValueError, match="bf16_weights needs bf16 precision"):
        InferenceConfig(bf16_weights=True).validate()


def test_the_frontend_setting_reaches_the_model(tiny_checkpoint):
    """``mast3r.bf16_weights`` (ROS parameter, ``--set``) is the front-end config field the model is built with."""
    from mast3r_ros.localization.frontends.mast3r import Mast3rFrontEnd, Mast3rFrontEndConfig

    def linear_dtypes(cfg):
        net = Mast3rFrontEnd(cfg).model.net
        return {m.weight.dtype for m in net.modules() if isinstance(m, nn.Linear)}

    base = Mast3rFrontEndConfig(checkpoint=str(tiny_checkpoint), amp_dtype="bf16")
    assert linear_dtypes(base) == {torch.float32}
    assert linear_dtypes(Mast3rFrontEndConfig(checkpoint=str(tiny_checkpoint), amp_dtype="bf16",
                                              bf16_weights=True)) == {torch.bfloat16}
