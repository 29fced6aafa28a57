"""2D rotary position embedding (RoPE) as used by CroCo/DUSt3R/MASt3R, evaluated as a complex product.

Official semantics: a head vector of size ``d`` is split in two halves; the first half is rotated by
the token's row index, the second by its column index. Within a half of size ``h = d/2``, channel
``i < h/2`` pairs with channel ``i + h/2`` and both rotate by ``pos * freq**(-2i/h)``.

Speed: attention layers keep their q/k projection rows in *pair order* (see :func:`rope_pair_order`),
so every rotating pair is two adjacent floats and the rotation is one complex multiply per pair
instead of the reference's split/negate/concatenate/multiply/add passes. The permutation is applied
when weights are loaded and undone when they are saved (see ``blocks.py``), so state dicts keep the
official layout. Dot products q.k are unchanged by a common permutation of q and k channels.
"""
from __future__ import annotations

import torch


def rope_pair_order(head_dim: int) -> list[int]:
    """Official channel indices in pair order: [0, q, 1, q+1, ..., then the same for the second half]."""
    quarter = head_dim // 4
    order = []
    for half in (0, 1):
        base = half * head_dim // 2
        for i in range(quarter):
            order += [base + i, base + i + quarter]
    return order


def rope_rotations(positions: torch.Tensor, head_dim: int, freq: float) -> torch.Tensor:
    """Unit complex rotation per token and channel pair: [B, N, 1, head_dim/2] complex64.

    ``positions``: [B, N, 2] int64 (row, col) of each patch. Angles are computed in float32 exactly as
    the reference does (inverse frequencies, outer product, then cos/sin).
    """
    half = head_dim // 2
    inv_freq = 1.0 / (freq ** (torch.arange(0, half, 2, device=positions.device).float() / half))
    seq = torch.arange(int(positions.max()) + 1, device=positions.device, dtype=torch.float32)
    angles = torch.outer(seq, inv_freq)  # [seq_len, head_dim/4]
    per_token = torch.cat((angles[positions[..., 0]], angles[positions[..., 1]]), dim=-1)  # [B, N, head_dim/2]
    return torch.complex(per_token.cos(), per_token.sin())[:, :, None]


def apply_rope(tokens: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """Rotate ``tokens`` [B, N, heads, head_dim] whose channels are in pair order; returns the same shape."""
    b, n, h, d = tokens.shape
    work = tokens if tokens.dtype in (torch.float32, torch.float64) else tokens.float()
    pairs = torch.view_as_complex(work.reshape(b, n, h, d // 2, 2))
    rotated = torch.view_as_real(pairs * rotations).reshape(b, n, h, d)
    return rotated.to(tokens.dtype)
