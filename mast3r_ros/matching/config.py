"""Configuration and input validation shared by the matching components.

Why a separate module: every public entry point (FRM, symmetric extraction, coarse-to-fine) must reject
bad inputs with the same clear ``ValueError`` messages, and the backends must see descriptor maps in one
canonical form (float32 torch tensors, contiguous, on the requested device).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import numpy as np
import torch

ArrayLike = Union[np.ndarray, torch.Tensor]

BACKENDS = ("auto", "torch", "torch-pruned", "faiss")


@dataclass(frozen=True)
class MatchingConfig:
    """Options of dense descriptor matching (FRM and symmetric extraction).

    subsample:   grid step S in pixels of the FRM start grid (rows/cols S//2, S//2+S, ...).
    pixel_tol:   0 = exact reciprocity (iterate until cycles); > 0 = one round trip from the grid and keep
                 points that come back within ``pixel_tol`` pixels (Euclidean, strict ``<``).
    max_iter:    number of forward/backward round trips; None = 10 (grid start, pixel_tol 0) or 1
                 (explicit start points or pixel_tol > 0), as the official implementation.
    backend:     'torch' (blocked matmul + argmax, CPU/CUDA), 'torch-pruned' (exact tile-bound branch and
                 bound, CPU), 'faiss' (IndexFlatIP) or 'auto' (fastest available: 'torch-pruned' on CPU,
                 'torch' on CUDA; see index.resolve_backend). All exact, same tie rule.
    device:      'cpu' or 'cuda[:k]' for the nearest-neighbour searches; CUDA is never required.
    fp16:        CUDA only: half-precision scores (faster, NOT bit-identical to float32 results).
    border:      symmetric extraction: drop matches closer than ``border`` pixels to an image edge
                 (in either image); 0 keeps everything.
    conf_thr:    symmetric extraction: keep matches whose min confidence is >= conf_thr (None = all).
    max_matches: symmetric extraction: spatially uniform thinning down to at most this many (None = all).
    """

    subsample: int = 8
    pixel_tol: float = 0.0
    max_iter: int | None = None
    backend: str = "auto"
    device: str = "cpu"
    fp16: bool = False
    border: int = 0
    conf_thr: float | None = None
    max_matches: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.subsample, (int, np.integer)) or self.subsample < 1:
            raise ValueError(f"subsample must be a positive int, got {self.subsample!r}")
        if not np.isfinite(self.pixel_tol) or self.pixel_tol < 0:
            raise ValueError(f"pixel_tol must be finite and >= 0, got {self.pixel_tol!r}")
        if self.max_iter is not None and (not isinstance(self.max_iter, (int, np.integer)) or self.max_iter < 1):
            raise ValueError(f"max_iter must be None or an int >= 1, got {self.max_iter!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.border < 0:
            raise ValueError(f"border must be >= 0, got {self.border!r}")
        if self.conf_thr is not None and not np.isfinite(self.conf_thr):
            raise ValueError(f"conf_thr must be finite or None, got {self.conf_thr!r}")
        if self.max_matches is not None and self.max_matches < 1:
            raise ValueError(f"max_matches must be None or >= 1, got {self.max_matches!r}")
        if self.fp16 and not str(self.device).startswith("cuda"):
            raise ValueError("fp16=True is only supported with device='cuda' (CPU half matmul is slow and inexact)")


def check_device(device: str | torch.device) -> torch.device:
    """Parse ``device``; a CUDA request without CUDA is an error (never a silent CPU run)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"invalid device {device!r}: {exc}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device={str(device)!r} requested but CUDA is not available in this torch build/machine; "
                           "use device='cpu'")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda[:k]', got {device!r}")
    return dev


def as_desc_map(desc: ArrayLike, name: str, device: torch.device) -> torch.Tensor:
    """Validate one descriptor map and return it as float32 [H, W, D] contiguous on ``device``.

    Accepts numpy or torch, float16/32/64 (float16 is widened exactly; float64 is rounded to float32,
    as the official code works in float32). Raises ValueError on wrong rank, empty maps, NaN/Inf.
    """
    if isinstance(desc, np.ndarray):
        if not np.issubdtype(desc.dtype, np.floating):
            raise ValueError(f"{name} must be a floating-point array, got dtype {desc.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(desc))
    elif isinstance(desc, torch.Tensor):
        if not desc.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor, got dtype {desc.dtype}")
        t = desc.detach()
    else:
        raise ValueError(f"{name} must be a numpy array or torch tensor, got {type(desc).__name__}")
    if t.ndim != 3:
        raise ValueError(f"{name} must have shape [H, W, D], got {tuple(t.shape)}")
    if min(t.shape) == 0:
        raise ValueError(f"{name} is empty: shape {tuple(t.shape)}")
    t = t.to(device=device, dtype=torch.float32).contiguous()
    # a finite sum proves every element finite (NaN/Inf propagate) at a fraction of isfinite's cost;
    # only a non-finite sum (or a genuine overflow) needs the element-wise check
    if not bool(torch.isfinite(t.sum())) and not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or Inf values")
    return t


def as_conf_map(conf: ArrayLike, name: str, shape_hw: tuple[int, int]) -> np.ndarray:
    """Validate a confidence map [H, W] matching ``shape_hw``; returned as float32 numpy (CPU)."""
    if isinstance(conf, torch.Tensor):
        conf = conf.detach().cpu().numpy()
    if not isinstance(conf, np.ndarray):
        raise ValueError(f"{name} must be a numpy array or torch tensor, got {type(conf).__name__}")
    if conf.shape != tuple(shape_hw):
        raise ValueError(f"{name} must have shape {tuple(shape_hw)} (H, W of its descriptor map), got {conf.shape}")
    conf = conf.astype(np.float32)
    if not np.isfinite(conf).all():
        raise ValueError(f"{name} contains NaN or Inf values")
    return conf


def check_same_dim(d1: torch.Tensor, d2: torch.Tensor) -> None:
    if d1.shape[-1] != d2.shape[-1]:
        raise ValueError(f"descriptor dims differ: desc1 has D={d1.shape[-1]}, desc2 has D={d2.shape[-1]}")
