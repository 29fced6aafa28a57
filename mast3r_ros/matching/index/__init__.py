"""mast3r_ros.matching.index (ROS-free core): exact MIPS nearest-neighbour indexes and the factory.

Modules
-------
* :mod:`~mast3r_ros.matching.index.backends` - NNIndex protocol, TorchBlockedIndex, FaissIndex, CachedNN;
  the tie rule and how each backend stays exact.
* :mod:`~mast3r_ros.matching.index.pruned` - TorchPrunedIndex: branch and bound over pixel tiles (CPU).

The factory (:func:`resolve_backend`, :func:`build_index`) lives here, above the backends, so that no
backend imports it back; a new backend is one new module plus one branch here.
"""
from __future__ import annotations

import torch

from mast3r_ros.matching.config import check_device
from mast3r_ros.matching.index.backends import CachedNN, FaissIndex, NNIndex, TorchBlockedIndex
from mast3r_ros.matching.index.pruned import TorchPrunedIndex

__all__ = ["CachedNN", "FaissIndex", "NNIndex", "TorchBlockedIndex", "TorchPrunedIndex", "build_index",
           "resolve_backend"]


def resolve_backend(backend: str, device: torch.device, dense_map: bool = True) -> str:
    """'auto' -> the fastest exact backend available for ``device``.

    On CPU the order by speed is 'torch-pruned' (tile bounds, pruned.py) < 'torch' (blocked brute
    force) < 'faiss' (IndexFlatIP keeps a heap per query and re-blocks its BLAS calls); measure it
    with benchmarks/bench_matching.py. The pruned search also issues far fewer OpenMP regions, which
    matters on a loaded machine. On CUDA the blocked matmul is used (no extra package,
    GPU matmul is cheap, branch-and-bound does not pay there).
    """
    if backend == "auto":
        return "torch-pruned" if device.type == "cpu" and dense_map else "torch"
    if backend not in ("torch", "torch-pruned", "faiss"):
        raise ValueError(f"unknown backend {backend!r}; expected 'auto', 'torch', 'torch-pruned' or 'faiss'")
    return backend


def build_index(db: torch.Tensor, backend: str = "auto", device: str | torch.device = "cpu",
                fp16: bool = False, hw: tuple[int, int] | None = None) -> NNIndex:
    """Build an exact MIPS index over ``db`` (float32 [M, D]; rows = flat pixel indices y*W+x).

    hw: (H, W) of the map when ``db`` is a dense map (needed by 'torch-pruned', which uses its tiles).
    """
    dev = check_device(device)
    name = resolve_backend(backend, dev, dense_map=hw is not None and not fp16)
    db = db.to(dev)
    if name == "torch-pruned":
        if dev.type != "cpu" or fp16:
            raise ValueError("backend='torch-pruned' is CPU float32 only; use 'torch' on CUDA")
        if hw is None or hw[0] * hw[1] != db.shape[0]:
            raise ValueError(f"backend='torch-pruned' needs the map size hw=(H, W) with H*W = {db.shape[0]}")
        return TorchPrunedIndex(db.reshape(hw[0], hw[1], -1))
    if name == "torch":
        return TorchBlockedIndex(db, fp16=fp16)
    if fp16:
        raise ValueError("fp16 is only available with backend='torch'")
    return FaissIndex(db)
