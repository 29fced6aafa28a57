"""Inference front door: device/dtype from config, encode once, decode against many partners.

Typical localization use::

    model = Mast3rModel.from_checkpoint(path, InferenceConfig(device="cpu"))
    kf = model.encode(keyframe_images)            # once per keyframe, cache it
    q = model.encode(query_image)
    pred_q, pred_kf = model.infer(q[[0, 0]], kf[[3, 7]], heads1={"desc"}, heads2={"desc"})

Outputs are dicts of channel-last float32 tensors at network resolution:
``pts3d`` [B, H, W, 3] (metres for the metric checkpoint; view 1's points in view 1's camera frame,
view 2's points *also in view 1's camera frame*, OpenCV optical axes), ``conf`` [B, H, W] (>= 1),
``desc`` [B, H, W, D] (unit L2 norm), ``desc_conf`` [B, H, W] (> 0).

Mixed precision (``amp_dtype``): matmuls, convolutions and attention of the encoder, decoders and heads
run under autocast; RoPE angles, the heads' post-processing (depth/confidence activations, descriptor
normalisation) and every output stay float32. ``bf16_weights`` keeps a bf16 copy of the weights that
autocast would cast at every call (same outputs, half the weight memory). ``benchmarks/bench_forward.py``
measures the speed and the differences from float32 that this policy gives.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import torch

from .checkpoint import load_network
from .config import Mast3rConfig
from .network import Encoding, Mast3rNet
from .precision import bf16_weight_copy, resolve_amp

HEADS = frozenset({"pts3d", "desc"})
_AMP = {"fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass
class InferenceConfig:
    device: str = "cpu"          # 'cpu', 'cuda', 'cuda:1'
    amp_dtype: str | None = None  # None/'' or 'fp32'; 'bf16' (CPU, CUDA), 'fp16' (CUDA) or 'auto' (resolve_amp)
    num_threads: int | None = None  # CPU threads for torch; None leaves torch's default
    # bf16 precision only: hold a bf16 copy of the linear / convolution weights (cast once, half the
    # memory) instead of letting autocast cast them at every call; same outputs (precision.bf16_weight_copy)
    bf16_weights: bool = False

    def validate(self) -> "InferenceConfig":
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device {self.device!r} requested but CUDA is not available")
        precision = self.precision()
        if self.bf16_weights and precision != "bf16":
            raise ValueError(f"bf16_weights needs bf16 precision (amp_dtype 'bf16', or 'auto' where it picks "
                             f"bf16); amp_dtype {self.amp_dtype!r} gives {precision} here")
        return self

    def precision(self) -> str:
        """The resolved precision on this machine: 'fp32', 'bf16' or 'fp16'."""
        return resolve_amp(self.amp_dtype, torch.device(self.device).type)


class Mast3rModel:
    """A loaded :class:`Mast3rNet` with its device and precision policy."""

    def __init__(self, net: Mast3rNet, config: InferenceConfig | None = None):
        self.config = (config or InferenceConfig()).validate()
        if self.config.num_threads:
            torch.set_num_threads(self.config.num_threads)
        self.device = torch.device(self.config.device)
        self.precision = self.config.precision()  # 'fp32', 'bf16' or 'fp16', 'auto' resolved
        self.net = (bf16_weight_copy(net) if self.config.bf16_weights else net).to(self.device).eval()
        for head in (self.net.downstream_head1, self.net.downstream_head2):
            head.dpt.to(memory_format=torch.channels_last)  # same values, faster convolutions

    @classmethod
    def from_checkpoint(cls, path: str | Path, config: InferenceConfig | None = None,
                        net_config: Mast3rConfig | None = None) -> "Mast3rModel":
        return cls(load_network(path, net_config), config)

    def _autocast(self):
        dtype = _AMP.get(self.precision)
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    @torch.inference_mode()
    def encode(self, images: torch.Tensor) -> Encoding:
        """[B, 3, H, W] normalised images -> :class:`Encoding` (kept on the model's device)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [B, 3, H, W], got {tuple(images.shape)}")
        with self._autocast():
            return self.net.encode(images.to(self.device))

    @torch.inference_mode()
    def infer(self, enc1: Encoding, enc2: Encoding, heads1=HEADS, heads2=HEADS):
        """Decode pairs (enc1[i], enc2[i]) and run the requested heads of each view.

        heads1/heads2: subsets of {'pts3d', 'desc'}; an empty set skips that view's head.
        """
        for heads in (heads1, heads2):
            if not set(heads) <= HEADS:
                raise ValueError(f"unknown heads {set(heads) - HEADS}; choose from {sorted(HEADS)}")
        keep = set()
        for heads in (heads1, heads2):
            if heads:
                keep |= self.net.heads_needed_layers("pts3d" in heads)
        with self._autocast():
            dec1, dec2 = self.net.decode(enc1, enc2, keep)
        preds = []
        for head, dec, enc, heads in ((self.net.downstream_head1, dec1, enc1, heads1),
                                      (self.net.downstream_head2, dec2, enc2, heads2)):
            if not heads:
                preds.append({})
                continue
            with self._autocast():
                preds.append(head(dec, enc.image_hw, want_points="pts3d" in heads, want_desc="desc" in heads))
        return preds[0], preds[1]

    def infer_pair(self, img1: torch.Tensor, img2: torch.Tensor, heads1=HEADS, heads2=HEADS):
        """Run pairs of images [B, 3, H1, W1] and [B, 3, H2, W2]; same-size views share one encoder batch."""
        if img1.shape[-2:] == img2.shape[-2:]:
            both = self.encode(torch.cat([img1, img2]))
            b = img1.shape[0]
            enc1, enc2 = both[0:b], both[b:2 * b]
        else:
            enc1, enc2 = self.encode(img1), self.encode(img2)
        return self.infer(enc1, enc2, heads1, heads2)
