"""A plain, functional MASt3R forward written straight from the official formulas.

Independent of the optimised modules in mast3r_ros.model (it reads weights by state-dict key and uses
explicit softmax attention, per-layer RoPE via embedding lookups, channel-first pixel_shuffle and
unfused DPT steps), so comparing the two checks that our optimisations change no number, for any
configuration of the family and any image size.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _rope(x, pos, freq):
    d = x.shape[-1] // 2

    def one(t, p):
        inv = 1.0 / (freq ** (torch.arange(0, d, 2).float() / d))
        ang = torch.einsum("i,j->ij", torch.arange(int(pos.max()) + 1).float(), inv)
        ang = torch.cat((ang, ang), dim=-1)
        cos, sin = F.embedding(p, ang.cos())[:, None], F.embedding(p, ang.sin())[:, None]
        t1, t2 = t[..., : d // 2], t[..., d // 2:]
        return t * cos + torch.cat((-t2, t1), dim=-1) * sin

    y, xx = x.chunk(2, dim=-1)
    return torch.cat((one(y, pos[:, :, 0]), one(xx, pos[:, :, 1])), dim=-1)


def _ln(sd, pre, x):
    return F.layer_norm(x, x.shape[-1:], sd[pre + ".weight"], sd[pre + ".bias"], eps=1e-6)


def _lin(sd, pre, x):
    return F.linear(x, sd[pre + ".weight"], sd[pre + ".bias"])


def _attn(q, k, v, heads):
    b, n, c = q.shape
    split = lambda t: t.reshape(t.shape[0], t.shape[1], heads, c // heads).transpose(1, 2)  # noqa: E731
    return split(q), split(k), split(v)


def _softmax_attention(q, k, v):
    a = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5
    return a.softmax(dim=-1) @ v


def _mlp(sd, pre, x):
    return _lin(sd, pre + ".fc2", F.gelu(_lin(sd, pre + ".fc1", x)))


def _self_attn(sd, pre, x, pos, heads, freq):
    b, n, c = x.shape
    qkv = _lin(sd, pre + ".qkv", x).reshape(b, n, 3, heads, c // heads).transpose(1, 3)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    out = _softmax_attention(_rope(q, pos, freq), _rope(k, pos, freq), v)
    return _lin(sd, pre + ".proj", out.transpose(1, 2).reshape(b, n, c))


def _cross_attn(sd, pre, x, y, xpos, ypos, heads, freq):
    b, n, c = x.shape
    q, k, v = _attn(_lin(sd, pre + ".projq", x), _lin(sd, pre + ".projk", y), _lin(sd, pre + ".projv", y), heads)
    out = _softmax_attention(_rope(q, xpos, freq), _rope(k, ypos, freq), v)
    return _lin(sd, pre + ".proj", out.transpose(1, 2).reshape(b, n, c))


def encode(sd, cfg, img):
    x = F.conv2d(img, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=16)
    gh, gw = x.shape[-2:]
    x = x.flatten(2).transpose(1, 2)
    yy, xx = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")
    pos = torch.stack([yy.flatten(), xx.flatten()], -1)[None].expand(img.shape[0], -1, -1)
    for i in range(cfg.enc_depth):
        p = f"enc_blocks.{i}"
        x = x + _self_attn(sd, p + ".attn", _ln(sd, p + ".norm1", x), pos, cfg.enc_num_heads, cfg.rope_freq)
        x = x + _mlp(sd, p + ".mlp", _ln(sd, p + ".norm2", x))
    return _ln(sd, "enc_norm", x), pos


def decode(sd, cfg, f1, pos1, f2, pos2):
    out = [(f1, f2)]
    x1, x2 = _lin(sd, "decoder_embed", f1), _lin(sd, "decoder_embed", f2)
    h, freq = cfg.dec_num_heads, cfg.rope_freq

    def block(p, x, y, xp, yp):
        x = x + _self_attn(sd, p + ".attn", _ln(sd, p + ".norm1", x), xp, h, freq)
        yn = _ln(sd, p + ".norm_y", y)
        x = x + _cross_attn(sd, p + ".cross_attn", _ln(sd, p + ".norm2", x), yn, xp, yp, h, freq)
        return x + _mlp(sd, p + ".mlp", _ln(sd, p + ".norm3", x))

    for i in range(cfg.dec_depth):
        x1, x2 = block(f"dec_blocks.{i}", x1, x2, pos1, pos2), block(f"dec_blocks2.{i}", x2, x1, pos2, pos1)
        out.append((x1, x2))
    out[-1] = (_ln(sd, "dec_norm", out[-1][0]), _ln(sd, "dec_norm", out[-1][1]))
    return [o[0] for o in out], [o[1] for o in out]


def _conv(sd, pre, x, **kw):
    return F.conv2d(x, sd[pre + ".weight"], sd.get(pre + ".bias"), **kw)


def _rcu(sd, pre, x):
    out = _conv(sd, pre + ".conv1", F.relu(x), padding=1)
    return _conv(sd, pre + ".conv2", F.relu(out), padding=1) + x


def _fusion(sd, pre, x, skip=None):
    if skip is not None:
        x = x + _rcu(sd, pre + ".resConfUnit1", skip)
    x = F.interpolate(_rcu(sd, pre + ".resConfUnit2", x), scale_factor=2, mode="bilinear", align_corners=True)
    return _conv(sd, pre + ".out_conv", x)


def head(sd, cfg, n, layers, hw):
    H, W = hw
    gh, gw = H // 16, W // 16
    pre = f"downstream_head{n}"
    d = pre + ".dpt"
    hooks = [layers[i] for i in cfg.dpt_hooks]
    maps = [t.transpose(1, 2).reshape(t.shape[0], -1, gh, gw) for t in hooks]
    ap = d + ".act_postprocess"
    maps[0] = F.conv_transpose2d(_conv(sd, ap + ".0.0", maps[0]), sd[ap + ".0.1.weight"], sd[ap + ".0.1.bias"],
                                 stride=4)
    maps[1] = F.conv_transpose2d(_conv(sd, ap + ".1.0", maps[1]), sd[ap + ".1.1.weight"], sd[ap + ".1.1.bias"],
                                 stride=2)
    maps[2] = _conv(sd, ap + ".2.0", maps[2])
    maps[3] = _conv(sd, ap + ".3.1", _conv(sd, ap + ".3.0", maps[3]), stride=2, padding=1)
    maps = [_conv(sd, f"{d}.scratch.layer{i + 1}_rn", m, padding=1) for i, m in enumerate(maps)]
    s = d + ".scratch"
    p = _fusion(sd, s + ".refinenet4", maps[3])[:, :, : maps[2].shape[2], : maps[2].shape[3]]
    p = _fusion(sd, s + ".refinenet3", p, maps[2])
    p = _fusion(sd, s + ".refinenet2", p, maps[1])
    p = _fusion(sd, s + ".refinenet1", p, maps[0])
    p = _conv(sd, d + ".head.0", p, padding=1)
    p = F.interpolate(p, scale_factor=2, mode="bilinear", align_corners=True)
    p = _conv(sd, d + ".head.4", F.relu(_conv(sd, d + ".head.2", p, padding=1)))
    cat = torch.cat([layers[0], layers[-1]], dim=-1)
    loc = _mlp(sd, pre + ".head_local_features", cat)
    b = cat.shape[0]
    loc = F.pixel_shuffle(loc.transpose(-1, -2).reshape(b, -1, gh, gw), 16)
    fmap = torch.cat([p, loc], dim=1).permute(0, 2, 3, 1)
    xyz = fmap[..., :3]
    nrm = xyz.norm(dim=-1, keepdim=True)
    out = {"pts3d": xyz / nrm.clip(min=1e-8) * torch.expm1(nrm), "conf": 1 + fmap[..., 3].exp()}
    desc = fmap[..., 4: 4 + cfg.desc_dim]
    out["desc"] = desc / desc.norm(dim=-1, keepdim=True)
    out["desc_conf"] = fmap[..., 4 + cfg.desc_dim].exp()
    return out


@torch.no_grad()
def forward(sd, cfg, img1, img2):
    f1, p1 = encode(sd, cfg, img1)
    f2, p2 = encode(sd, cfg, img2)
    d1, d2 = decode(sd, cfg, f1, p1, f2, p2)
    return head(sd, cfg, 1, d1, img1.shape[-2:]), head(sd, cfg, 2, d2, img2.shape[-2:])
