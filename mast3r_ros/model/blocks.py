"""Transformer building blocks of the CroCo encoder/decoder (parameter names match the official ones)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .rope import apply_rope, rope_pair_order

LN_EPS = 1e-6


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, out: int | None = None):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, out or dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def _rows_in_pair_order(num_heads: int, head_dim: int, offset: int) -> list[int]:
    order = rope_pair_order(head_dim)
    return [offset + h * head_dim + c for h in range(num_heads) for c in order]


class _PairOrderedProjections(nn.Module):
    """Keeps the q/k projection rows of this module in RoPE pair order internally.

    ``_pair_rows`` maps linear-layer name -> (row indices of the official layout, in internal order).
    Loading permutes official -> internal; saving restores the official layout, so checkpoints
    round-trip unchanged.
    """

    _pair_rows: dict[str, list[int]]

    def _install_hooks(self) -> None:
        self.register_load_state_dict_post_hook(_to_internal_order)
        self._register_state_dict_hook(_to_official_order)


def _to_internal_order(module: _PairOrderedProjections, incompatible_keys) -> None:
    with torch.no_grad():
        for name, rows in module._pair_rows.items():
            linear = getattr(module, name)
            for p in (linear.weight, linear.bias):
                if p.device.type != "meta":
                    p.data = p.data.index_select(0, torch.tensor(rows, device=p.device))


def _to_official_order(module: _PairOrderedProjections, state_dict, prefix, local_metadata):
    for name, rows in module._pair_rows.items():
        inverse = [0] * len(rows)
        for internal, official in enumerate(rows):
            inverse[official] = internal
        for kind in ("weight", "bias"):
            key = f"{prefix}{name}.{kind}"
            tensor = state_dict[key]
            if tensor.device.type != "meta":
                state_dict[key] = tensor.index_select(0, torch.tensor(inverse, device=tensor.device))
    return state_dict


def _heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    b, n, c = x.shape
    return x.reshape(b, n, num_heads, c // num_heads)


def _attend(q, k, v) -> torch.Tensor:
    """q, k, v: [B, N, heads, head_dim] -> [B, N, heads * head_dim]."""
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    b, h, n, d = out.shape
    return out.transpose(1, 2).reshape(b, n, h * d)


class SelfAttention(_PairOrderedProjections):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        head_dim = dim // num_heads
        q_rows = _rows_in_pair_order(num_heads, head_dim, 0)
        k_rows = _rows_in_pair_order(num_heads, head_dim, dim)
        self._pair_rows = {"qkv": q_rows + k_rows + list(range(2 * dim, 3 * dim))}
        self._install_hooks()

    def forward(self, x: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads)
        q = apply_rope(qkv[:, :, 0], rope)
        k = apply_rope(qkv[:, :, 1], rope)
        return self.proj(_attend(q, k, qkv[:, :, 2]))


class CrossAttention(_PairOrderedProjections):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.projq = nn.Linear(dim, dim)
        self.projk = nn.Linear(dim, dim)
        self.projv = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        rows = _rows_in_pair_order(num_heads, dim // num_heads, 0)
        self._pair_rows = {"projq": rows, "projk": rows}
        self._install_hooks()

    def forward(self, x: torch.Tensor, mem: torch.Tensor, rope_x: torch.Tensor, rope_mem: torch.Tensor):
        q = apply_rope(_heads(self.projq(x), self.num_heads), rope_x)
        k = apply_rope(_heads(self.projk(mem), self.num_heads), rope_mem)
        return self.proj(_attend(q, k, _heads(self.projv(mem), self.num_heads)))


class EncoderBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = SelfAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), rope)
        return x + self.mlp(self.norm2(x))


class DecoderBlock(nn.Module):
    """Self-attention, cross-attention to the other view's tokens, MLP (pre-norm residuals)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, norm_mem: bool):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = SelfAttention(dim, num_heads)
        self.cross_attn = CrossAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.norm3 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.norm_y = nn.LayerNorm(dim, eps=LN_EPS) if norm_mem else nn.Identity()

    def forward(self, x, mem, rope_x: torch.Tensor, rope_mem: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), rope_x)
        mem = self.norm_y(mem)
        x = x + self.cross_attn(self.norm2(x), mem, rope_x, rope_mem)
        return x + self.mlp(self.norm3(x))
