"""Prediction heads: DPT for 3D points + confidence, MLP for local descriptors + their confidence.

Parameter names follow the official ``Cat_MLP_LocalFeatures_DPT_Pts3d`` so checkpoints load as-is.
All outputs are channel-last, at the full network-image resolution [B, H, W, ...].
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import Mlp
from .config import Mast3rConfig

DPT_FEATURE_DIM = 256
DPT_LAST_DIM = DPT_FEATURE_DIM // 2
DPT_LAYER_DIMS = (96, 192, 384, 768)


class ResidualConvUnit(nn.Module):
    def __init__(self, features: int):
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # In-place only on temporaries: x itself is the skip connection.
        return self.conv2(F.relu_(self.conv1(F.relu(x)))).add_(x)


class FusionBlock(nn.Module):
    """Adds a skip feature map, refines, upsamples x2 (bilinear, align_corners) and projects (1x1)."""

    def __init__(self, features: int):
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, 1)
        self.resConfUnit1 = ResidualConvUnit(features)
        self.resConfUnit2 = ResidualConvUnit(features)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if skip is not None:
            x = self.resConfUnit1(skip).add_(x)
        x = self.resConfUnit2(x)
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        return self.out_conv(x)


class Scratch(nn.Module):
    def __init__(self):
        super().__init__()
        for i, dim in enumerate(DPT_LAYER_DIMS, start=1):
            setattr(self, f"layer{i}_rn", nn.Conv2d(dim, DPT_FEATURE_DIM, 3, padding=1, bias=False))
        # The official module lists the same convolutions twice (two state-dict names, one tensor).
        self.layer_rn = nn.ModuleList([getattr(self, f"layer{i}_rn") for i in range(1, 5)])
        for i in range(1, 5):
            setattr(self, f"refinenet{i}", FusionBlock(DPT_FEATURE_DIM))


class Upsample(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)


class DPT(nn.Module):
    """Dense prediction transformer head reading four token layers (encoder output + 3 decoder)."""

    def __init__(self, token_dims: list[int], hooks: list[int], out_channels: int):
        super().__init__()
        self.hooks = hooks
        self.scratch = Scratch()
        self.head = nn.Sequential(
            nn.Conv2d(DPT_FEATURE_DIM, DPT_FEATURE_DIM // 2, 3, padding=1),
            Upsample(),
            nn.Conv2d(DPT_FEATURE_DIM // 2, DPT_LAST_DIM, 3, padding=1),
            nn.ReLU(inplace=True),  # full-resolution map: in place saves 100 MB at 512x384
            nn.Conv2d(DPT_LAST_DIM, out_channels, 1),
        )
        d0, d1, d2, d3 = DPT_LAYER_DIMS
        self.act_postprocess = nn.ModuleList([
            nn.Sequential(nn.Conv2d(token_dims[0], d0, 1), nn.ConvTranspose2d(d0, d0, 4, stride=4)),
            nn.Sequential(nn.Conv2d(token_dims[1], d1, 1), nn.ConvTranspose2d(d1, d1, 2, stride=2)),
            nn.Sequential(nn.Conv2d(token_dims[2], d2, 1)),
            nn.Sequential(nn.Conv2d(token_dims[3], d3, 1), nn.Conv2d(d3, d3, 3, stride=2, padding=1)),
        ])

    def forward(self, layers: list[torch.Tensor], grid_hw: tuple[int, int]) -> torch.Tensor:
        """``layers``: all token layers [B, N, C]; returns [B, out_channels, 16*gh, 16*gw]."""
        gh, gw = grid_hw
        maps = []
        for i, hook in enumerate(self.hooks):
            tokens = layers[hook]
            # [B, N, C] -> [B, C, gh, gw] as a channels-last view: no copy, and the layout oneDNN's
            # convolutions run fastest on (the DPT weights are converted to match in Mast3rModel).
            fmap = tokens.reshape(tokens.shape[0], gh, gw, tokens.shape[2]).permute(0, 3, 1, 2)
            maps.append(self.scratch.layer_rn[i](self.act_postprocess[i](fmap)))
        s = self.scratch
        path = s.refinenet4(maps[3])[:, :, : maps[2].shape[2], : maps[2].shape[3]]
        path = s.refinenet3(path, maps[2])
        path = s.refinenet2(path, maps[1])
        path = s.refinenet1(path, maps[0])
        return self.head(path)


def _reg_conf(x: torch.Tensor, mode: tuple) -> torch.Tensor:
    kind, vmin, vmax = mode
    if kind == "exp":
        return vmin + x.exp().clip(max=vmax - vmin)
    return (vmax - vmin) * torch.sigmoid(x) + vmin  # 'sigmoid'


def _reg_points(xyz: torch.Tensor, mode: tuple) -> torch.Tensor:
    """Official depth modes; 'exp': direction kept, norm mapped through expm1."""
    kind = mode[0]
    if kind == "linear":
        return xyz
    norm = xyz.norm(dim=-1, keepdim=True)
    xyz = xyz / norm.clip(min=1e-8)
    if kind == "square":
        return xyz * norm.square()
    return xyz * torch.expm1(norm)


class Mast3rHead(nn.Module):
    """One view's head. ``want_points``/``want_desc`` skip the parts a caller does not need."""

    def __init__(self, cfg: Mast3rConfig):
        super().__init__()
        self.cfg = cfg
        ed, dd = cfg.enc_embed_dim, cfg.dec_embed_dim
        self.dpt = DPT([ed, dd, dd, dd], cfg.dpt_hooks, out_channels=4)
        idim = ed + dd
        out = (cfg.desc_dim + int(cfg.two_confs)) * cfg.patch_size**2
        self.head_local_features = Mlp(idim, int(4 * idim), out)

    def forward(self, layers: list[torch.Tensor], image_hw: tuple[int, int],
                want_points: bool = True, want_desc: bool = True) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        p = cfg.patch_size
        gh, gw = image_hw[0] // p, image_hw[1] // p
        out: dict[str, torch.Tensor] = {}
        if want_points:
            # Post-processing in float32 under autocast too: exp/expm1 and norms lose digits in bf16.
            fmap = self.dpt(layers, (gh, gw)).permute(0, 2, 3, 1).float()  # [B, H, W, 4]
            out["pts3d"] = _reg_points(fmap[..., :3], cfg.depth_mode)
            out["conf"] = _reg_conf(fmap[..., 3], cfg.conf_mode)
        if want_desc:
            tokens = torch.cat([layers[0], layers[-1]], dim=-1)
            feats = self.head_local_features(tokens)  # [B, gh*gw, C*p*p]
            b = feats.shape[0]
            c = cfg.desc_dim + int(cfg.two_confs)
            # Pixel shuffle straight to channel-last: token (y, x), sub-pixel (i, j) -> pixel (y*p+i, x*p+j).
            local = feats.reshape(b, gh, gw, c, p, p).permute(0, 1, 4, 2, 5, 3).reshape(b, gh * p, gw * p, c).float()
            desc = local[..., : cfg.desc_dim]
            out["desc"] = desc / desc.norm(dim=-1, keepdim=True)
            if cfg.two_confs:
                out["desc_conf"] = _reg_conf(local[..., cfg.desc_dim], cfg.desc_conf_mode)
            elif want_points:
                out["desc_conf"] = out["conf"].clone()
        return out
