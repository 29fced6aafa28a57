"""2D rotary position embedding (RoPE) as used by CroCo/DUSt3R/MASt3R.

Each head vector of size ``d`` is split in two halves: the first half is rotated by the token's row
index, the second by its column index. Within a half of size ``h = d/2``, channel ``i < h/2`` pairs
with channel ``i + h/2`` and rotates by angle ``pos * freq**(-2i/h)``.

The tables are built once per forward for a given set of positions (``RopeTables``) and reused by
every attention layer of that width, instead of being rebuilt per layer.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class RopeTables:
    """cos/sin of the rotation angle per token and channel: [B, 1, N, head_dim], ready to broadcast."""

    cos: torch.Tensor
    sin: torch.Tensor


def _axis_tables(half_dim: int, seq_len: int, freq: float, device, dtype):
    inv_freq = 1.0 / (freq ** (torch.arange(0, half_dim, 2, device=device).float() / half_dim))
    t = torch.arange(seq_len, device=device, dtype=inv_freq.dtype)
    angles = torch.outer(t, inv_freq).to(dtype)
    angles = torch.cat((angles, angles), dim=-1)  # [seq_len, half_dim]
    return angles.cos(), angles.sin()


def rope_tables(positions: torch.Tensor, head_dim: int, freq: float, dtype: torch.dtype) -> RopeTables:
    """Tables for ``positions`` [B, N, 2] int64 (row, col) of each patch, for heads of ``head_dim``."""
    half = head_dim // 2
    seq_len = int(positions.max()) + 1
    cos, sin = _axis_tables(half, seq_len, freq, positions.device, dtype)
    rows, cols = positions[..., 0], positions[..., 1]
    cos_full = torch.cat((cos[rows], cos[cols]), dim=-1)[:, None]  # [B, 1, N, head_dim]
    sin_full = torch.cat((sin[rows], sin[cols]), dim=-1)[:, None]
    return RopeTables(cos_full, sin_full)


def apply_rope(tokens: torch.Tensor, tables: RopeTables) -> torch.Tensor:
    """Rotate ``tokens`` [B, heads, N, head_dim]; same arithmetic as the reference (x*cos + rot(x)*sin)."""
    b, h, n, d = tokens.shape
    quarters = tokens.reshape(b, h, n, 2, 2, d // 4)
    rotated = torch.stack((-quarters[..., 1, :], quarters[..., 0, :]), dim=-2).reshape(b, h, n, d)
    return tokens * tables.cos + rotated * tables.sin
