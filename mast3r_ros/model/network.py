"""The MASt3R network: shared ViT encoder, two cross-attending decoders, two heads.

The module tree (and so every state-dict key) mirrors the official ``AsymmetricMASt3R`` so that the
released checkpoints load with ``strict=True``. The forward is split into the stages a localization
system wants to call separately: encode an image once, decode it against many partners, and run
only the heads that are needed.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .blocks import LN_EPS, DecoderBlock, EncoderBlock
from .config import Mast3rConfig
from .heads import Mast3rHead
from .rope import rope_rotations


@dataclass
class Encoding:
    """Encoder output of a batch of same-sized images.

    tokens:    [B, N, enc_embed_dim] float, after the final encoder LayerNorm (N = (H/16)*(W/16)).
    positions: [B, N, 2] int64 (row, col) of each 16x16 patch, tokens in row-major order.
    image_hw:  (H, W) of the network image in pixels.
    """

    tokens: torch.Tensor
    positions: torch.Tensor
    image_hw: tuple[int, int]

    def __getitem__(self, index) -> "Encoding":
        """Select images of the batch (keeps the batch dimension): ``enc[2:3]``, ``enc[[0, 0, 1]]``."""
        if isinstance(index, int):
            index = slice(index, index + 1)
        return Encoding(self.tokens[index], self.positions[index], self.image_hw)

    @staticmethod
    def cat(encodings: list["Encoding"]) -> "Encoding":
        shapes = {e.image_hw for e in encodings}
        if len(shapes) != 1:
            raise ValueError(f"cannot batch encodings of different image sizes {sorted(shapes)}")
        return Encoding(torch.cat([e.tokens for e in encodings]), torch.cat([e.positions for e in encodings]),
                        encodings[0].image_hw)


class PatchEmbed(nn.Module):
    def __init__(self, embed_dim: int, patch_size: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(3, embed_dim, patch_size, stride=patch_size)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, _, h, w = images.shape
        p = self.patch_size
        if h % p or w % p:
            raise ValueError(f"image size {w}x{h} is not a multiple of the {p}-pixel patch")
        tokens = self.proj(images).flatten(2).transpose(1, 2)
        rows = torch.arange(h // p, device=images.device)
        cols = torch.arange(w // p, device=images.device)
        grid = torch.cartesian_prod(rows, cols)  # row-major (row, col)
        return tokens, grid[None].expand(b, -1, -1)


class Mast3rNet(nn.Module):
    def __init__(self, cfg: Mast3rConfig):
        super().__init__()
        self.cfg = cfg.validate()
        self.mask_token = nn.Parameter(torch.zeros(1, 1, cfg.dec_embed_dim))  # training only; kept for keys
        self.patch_embed = PatchEmbed(cfg.enc_embed_dim, cfg.patch_size)
        self.enc_blocks = nn.ModuleList(
            [EncoderBlock(cfg.enc_embed_dim, cfg.enc_num_heads, cfg.mlp_ratio) for _ in range(cfg.enc_depth)])
        self.enc_norm = nn.LayerNorm(cfg.enc_embed_dim, eps=LN_EPS)
        self.decoder_embed = nn.Linear(cfg.enc_embed_dim, cfg.dec_embed_dim)
        self.dec_blocks = self._decoder_blocks()
        self.dec_norm = nn.LayerNorm(cfg.dec_embed_dim, eps=LN_EPS)
        self.dec_blocks2 = self._decoder_blocks()
        self.downstream_head1 = Mast3rHead(cfg)
        self.downstream_head2 = Mast3rHead(cfg)

    def _decoder_blocks(self) -> nn.ModuleList:
        c = self.cfg
        return nn.ModuleList([DecoderBlock(c.dec_embed_dim, c.dec_num_heads, c.mlp_ratio, c.norm_im2_in_dec)
                              for _ in range(c.dec_depth)])

    def _rope(self, positions: torch.Tensor, dim: int, heads: int) -> torch.Tensor:
        return rope_rotations(positions, dim // heads, self.cfg.rope_freq)

    def encode(self, images: torch.Tensor) -> Encoding:
        """``images`` [B, 3, H, W] float, normalised to [-1, 1]; H and W multiples of 16."""
        tokens, positions = self.patch_embed(images)
        rope = self._rope(positions, self.cfg.enc_embed_dim, self.cfg.enc_num_heads)
        for block in self.enc_blocks:
            tokens = block(tokens, rope)
        return Encoding(self.enc_norm(tokens), positions, tuple(images.shape[-2:]))

    def decode(self, enc1: Encoding, enc2: Encoding, keep: set[int] | None = None):
        """Run both decoders. Returns per view the list [encoder tokens, block 1, ..., block D] where
        the last entry has the final decoder LayerNorm applied (what the heads read).

        ``keep``: indices of the list to retain (others are None) so memory stays small; None = all.
        """
        c = self.cfg
        if enc1.tokens.shape[0] != enc2.tokens.shape[0]:
            raise ValueError("both views of a pair batch must have the same batch size")
        rope1 = self._rope(enc1.positions, c.dec_embed_dim, c.dec_num_heads)
        rope2 = self._rope(enc2.positions, c.dec_embed_dim, c.dec_num_heads)
        f1, f2 = self.decoder_embed(enc1.tokens), self.decoder_embed(enc2.tokens)
        out1: list = [enc1.tokens]
        out2: list = [enc2.tokens]
        for i, (blk1, blk2) in enumerate(zip(self.dec_blocks, self.dec_blocks2), start=1):
            f1, f2 = blk1(f1, f2, rope1, rope2), blk2(f2, f1, rope2, rope1)
            last = i == c.dec_depth
            keep_i = keep is None or i in keep or last
            out1.append((self.dec_norm(f1) if last else f1) if keep_i else None)
            out2.append((self.dec_norm(f2) if last else f2) if keep_i else None)
        return out1, out2

    def heads_needed_layers(self, want_points: bool) -> set[int]:
        return set(self.cfg.dpt_hooks) if want_points else {0, self.cfg.dec_depth}


def random_network(cfg: Mast3rConfig, seed: int = 0, std: float = 0.02) -> Mast3rNet:
    """A network of configuration ``cfg`` with N(0, std) weights, built without default-init cost
    (meta device, then filled in place). For benchmarks of the released structure (no weights here)."""
    with torch.device("meta"):
        net = Mast3rNet(cfg)
    net = net.to_empty(device="cpu")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, std, generator=g)
    return net.eval()
