"""Mixed-precision policy: which dtype ``amp_dtype`` resolves to, and how far outputs move from float32.

CPU feature flags come from /proc/cpuinfo; the choice for each flag follows the measurement of
``benchmarks/bench_forward.py`` on such a CPU (the README's Benchmarks section has the figures).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

AMP_CHOICES = ("auto", "fp32", "bf16", "fp16")

# What ``amp_dtype='auto'`` picks on a CPU, by the first of these flags the CPU has (else fp32).
# Each entry follows benchmarks/bench_forward.py run on such a CPU (see the README's Benchmarks section).
CPU_AUTO_AMP = (("amx_bf16", "bf16"), ("avx512_bf16", "bf16"))


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> frozenset[str]:
    """Feature flags of the first CPU listed in ``cpuinfo`` (empty when the file is unreadable)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def resolve_amp(amp_dtype: str | None, device_type: str, flags: frozenset[str] | None = None,
                cuda_bf16: bool | None = None) -> str:
    """The precision a config asks for on ``device_type`` ('cpu' or 'cuda'): 'fp32', 'bf16' or 'fp16'.

    'auto' on CPU: per :data:`CPU_AUTO_AMP` from ``flags`` (default: this machine's); on CUDA: bf16
    where the GPU supports it (``cuda_bf16``, default: asks torch), else fp16.
    """
    amp = amp_dtype or "fp32"
    if amp not in AMP_CHOICES:
        raise ValueError(f"amp_dtype must be one of {', '.join(AMP_CHOICES)} (or empty for fp32), got {amp_dtype!r}")
    if amp != "auto":
        if amp == "fp16" and device_type == "cpu":
            raise ValueError("amp_dtype 'fp16' is not supported on CPU (use 'bf16', 'auto' or 'fp32')")
        return amp
    if device_type == "cuda":
        if cuda_bf16 is None:
            cuda_bf16 = torch.cuda.is_bf16_supported()
        return "bf16" if cuda_bf16 else "fp16"
    flags = cpu_flags() if flags is None else flags
    return next((dtype for flag, dtype in CPU_AUTO_AMP if flag in flags), "fp32")


# The layers whose weights autocast casts to the low-precision dtype at every call (matmuls, convolutions).
_CAST_BY_AUTOCAST = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)


def bf16_weight_copy(net: nn.Module) -> nn.Module:
    """A copy of ``net`` (a :class:`~mast3r_ros.model.network.Mast3rNet`) whose linear and convolution
    weights and biases are bfloat16, cast once (round to nearest even, as autocast casts them at every
    call); the other parameters (LayerNorms, the mask token) stay as they are. ``net`` is left unchanged
    and no second float32 copy is made. Run the copy under bf16 autocast (``Mast3rModel`` does): it then
    computes what autocast computes on ``net``, without re-casting ~1.2 GB of released weights per pass."""
    with torch.device("meta"):
        twin = type(net)(net.cfg)
    for name, module in net.named_modules():
        target = twin.get_submodule(name)
        low = isinstance(module, _CAST_BY_AUTOCAST)
        for pname, p in module.named_parameters(recurse=False):
            value = p.detach().to(torch.bfloat16 if low else p.dtype, copy=True)
            setattr(target, pname, nn.Parameter(value, requires_grad=False))
        for bname, b in module.named_buffers(recurse=False):
            target.register_buffer(bname, b.detach().clone())
    return twin.eval()


def output_differences(ref: dict[str, torch.Tensor], other: dict[str, torch.Tensor]) -> dict[str, float]:
    """How far one view's outputs ``other`` are from ``ref`` (same keys, [B, H, W, ...] float tensors).

    pts3d_rel: median / p99 of |dX| / |X| per pixel; conf_rel and desc_conf_rel: median / p99 of
    |dc| / c; desc_cos: median and minimum cosine between the descriptors of each pixel.
    """
    out: dict[str, float] = {}
    if "pts3d" in ref:
        rel = ((other["pts3d"].float() - ref["pts3d"]).norm(dim=-1) / ref["pts3d"].norm(dim=-1)).flatten()
        out["pts3d_rel_median"], out["pts3d_rel_p99"] = float(rel.median()), float(rel.quantile(0.99))
    for key in ("conf", "desc_conf"):
        if key in ref:
            rel = ((other[key].float() - ref[key]).abs() / ref[key]).flatten()
            out[f"{key}_rel_median"], out[f"{key}_rel_p99"] = float(rel.median()), float(rel.quantile(0.99))
    if "desc" in ref:
        cos = (other["desc"].float() * ref["desc"]).sum(-1).flatten()
        out["desc_cos_median"], out["desc_cos_min"] = float(cos.median()), float(cos.min())
    return out
