"""Other configurations and image sizes: our optimised network equals a plain reference forward."""
from __future__ import annotations

import pytest
import torch

from mast3r_ros.model import Mast3rConfig, Mast3rModel, Mast3rNet

from . import reference_forward as ref
from .test_model_fixture import relative_error

# Worst relative errors measured over both cases, both views, 1 and 2 threads (torch CPU): pts3d error /
# point norm 2.2e-5 (a few points near the origin), descriptor error / norm 1.7e-6, conf 1.3e-6 and
# desc_conf 7.1e-7 element-wise. Only float32 rounding differs (fused vs plain operations).
RTOL = {"pts3d": 3e-5, "desc": 2e-6, "conf": 1.6e-6, "desc_conf": 1e-6}


def _random_net(cfg: Mast3rConfig, seed: int) -> Mast3rNet:
    torch.manual_seed(seed)
    net = Mast3rNet(cfg)
    with torch.no_grad():  # no LayerNorm weight 1, no bias 0, decoders and heads all different
        for p in net.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return net


CASES = [
    # (config, view1 (H, W), view2 (H, W))
    (Mast3rConfig(enc_embed_dim=96, enc_depth=2, enc_num_heads=3, dec_embed_dim=64, dec_depth=12,
                  dec_num_heads=4, desc_dim=16), (208, 256), (256, 208)),
    (Mast3rConfig(enc_embed_dim=64, enc_depth=1, enc_num_heads=2, dec_embed_dim=48, dec_depth=11,
                  dec_num_heads=2, rope_freq=50.0), (112, 256), (160, 256)),
]


@pytest.mark.parametrize("cfg,hw1,hw2", CASES)
def test_network_equals_reference_forward(cfg, hw1, hw2):
    net = _random_net(cfg, seed=3)
    model = Mast3rModel(net)
    g = torch.Generator().manual_seed(7)
    img1 = torch.rand(1, 3, *hw1, generator=g) * 2 - 1
    img2 = torch.rand(1, 3, *hw2, generator=g) * 2 - 1
    ours = model.infer_pair(img1, img2)
    theirs = ref.forward(net.state_dict(), cfg, img1, img2)
    for view in (0, 1):
        for key in ("pts3d", "conf", "desc", "desc_conf"):
            a, b = ours[view][key], theirs[view][key]
            assert a.shape == b.shape, key
            err = relative_error(a.numpy(), b.numpy(), vectors=key in ("pts3d", "desc")).max()
            assert err <= RTOL[key], f"view{view + 1} {key}: relative error {err:.3g} > {RTOL[key]:g}"
