"""Exact maximum-inner-product nearest-neighbour search over one descriptor map: the index protocol, the
torch blocked and faiss backends, and the memoised query (:class:`CachedNN`).

A backend answers: for each query descriptor q (float32 [D]), which database row x (flat pixel index
y * W + x of the database map) maximises the dot product q . x, and with which score.

Tie rule (documented, and the same as the official ``dist='dot'`` matcher on CPU): among database rows
whose float32 score is *exactly* equal to the maximum, the lowest flat index wins. Results are exact
up to float32 rounding of the 24-term dot products; the torch backend reproduces the rounding of the
official blocked matmul (MKL sgemm, summed in the same order), so its answers are bit-identical to the
official ones on CPU. faiss sums in its own order, so two scores that agree to ~1e-7 could in principle
be ordered differently; on the fixtures its matches are identical too (the tests demand equality).

Backends
--------
* ``TorchBlockedIndex`` (CPU or CUDA): the database is kept as one contiguous [M, D] matrix; queries
  are scored block by block (``bs`` database rows at a time, output [bs, n] that stays cache-resident),
  only the per-query running maximum and the *block* holding it are kept (``amax`` is ~2x cheaper
  than ``max`` with indices on CPU); at the end each query's winning block is rescored once to find
  the index. The full [n, M] similarity matrix is never materialised.
* ``TorchPrunedIndex`` (pruned.py, CPU): exact branch and bound over small pixel tiles of a dense map,
  falling back to the blocked search for queries the bounds cannot prune.
* ``FaissIndex``: faiss ``IndexFlatIP`` with k = 1 (GPU index when faiss-gpu is installed and a CUDA
  device is requested).
"""
from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

try:  # faiss is a declared dependency, but keep the torch backend usable without it
    import faiss  # type: ignore
except ImportError:  # pragma: no cover - exercised only where faiss is missing
    faiss = None


class NNIndex(Protocol):
    """Exact MIPS over a fixed database [M, D]."""

    size: int

    def search(self, queries: torch.Tensor, lb: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """queries: float32 [n, D] on the index device -> (idx int64 [n], score float32 [n]) numpy.

        lb: optional float32 [n] scores already achieved by some database row for each query (a hint
        that lets bounded searches prune; never changes the answer). -inf = unknown."""


class TorchBlockedIndex:
    """Blocked matmul + running amax; see module docstring. ``db``: float32 [M, D] (kept, not copied)."""

    def __init__(self, db: torch.Tensor, block_rows: int = 256, max_queries: int = 4096, fp16: bool = False,
                 block_elems: int = 1 << 20):
        if db.ndim != 2 or db.shape[0] == 0:
            raise ValueError(f"database must be a non-empty [M, D] matrix, got {tuple(db.shape)}")
        if fp16 and db.device.type != "cuda":
            raise ValueError("fp16 scores are only supported on CUDA")
        self.dtype = torch.float16 if fp16 else torch.float32
        self.db = db.to(self.dtype).contiguous()          # [M, D], rows in flat pixel order
        self.dbT = self.db.T.contiguous()                  # [D, M], for the rescoring pass
        self.size = int(db.shape[0])
        self.block_rows = int(block_rows)
        self.block_elems = int(block_elems)
        self.max_queries = int(max_queries)

    @torch.no_grad()
    def search(self, queries: torch.Tensor, lb: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        n = int(queries.shape[0])
        if n == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        q = queries.to(device=self.db.device, dtype=self.dtype)
        idx = torch.empty(n, dtype=torch.int64, device=q.device)
        score = torch.empty(n, dtype=torch.float32, device=q.device)
        for s in range(0, n, self.max_queries):
            i, v = self._search_chunk(q[s:s + self.max_queries])
            idx[s:s + len(i)] = i
            score[s:s + len(v)] = v
        return idx.cpu().numpy(), score.cpu().numpy()

    def _search_chunk(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, M = q.shape[0], self.size
        # block rows adapted to the query count: the [bs, n] score block stays ~4 MB (L2/L3-resident) and
        # few queries do not pay for hundreds of tiny blocks
        bs = max(self.block_rows, min(32768, self.block_elems // max(n, 1)))
        qT = q.T.contiguous()                              # [D, n]
        n_blk = (M + bs - 1) // bs
        blk_max = torch.empty(n_blk, n, dtype=self.dtype, device=q.device)   # per-block maxima, small
        buf = torch.empty(bs, n, dtype=self.dtype, device=q.device)          # one block of scores
        for k in range(n_blk):
            j = k * bs
            b = buf[: min(bs, M - j)]
            torch.mm(self.db[j:j + bs], qT, out=b)
            torch.amax(b, dim=0, out=blk_max[k])
        best = blk_max.amax(dim=0)
        # first block reaching the maximum (an equal later block never wins a tie)
        best_blk = (blk_max == best).to(torch.uint8).argmax(dim=0) * bs
        # Rescore each query's winning block (query-major; same per-element summation as above) and take
        # the first maximum inside it: overall result = lowest flat index among exact maxima.
        idx = torch.empty(n, dtype=torch.int64, device=q.device)
        val = torch.empty(n, dtype=torch.float32, device=q.device)
        order = torch.argsort(best_blk)
        blk_sorted = best_blk[order]
        starts, counts = torch.unique_consecutive(blk_sorted, return_counts=True)
        pos = 0
        for j, c in zip(starts.tolist(), counts.tolist()):
            sel = order[pos:pos + c]
            pos += c
            s = q[sel] @ self.dbT[:, j:j + bs]
            v, a = s.max(dim=1)
            idx[sel] = a + j
            val[sel] = v.float()
        return idx, val


class FaissIndex:
    """faiss IndexFlatIP, k = 1. ``db``: float32 [M, D]. GPU index if a CUDA device is requested."""

    def __init__(self, db: torch.Tensor):
        if faiss is None:
            raise RuntimeError("backend='faiss' requested but the faiss package is not installed")
        if db.ndim != 2 or db.shape[0] == 0:
            raise ValueError(f"database must be a non-empty [M, D] matrix, got {tuple(db.shape)}")
        self.size = int(db.shape[0])
        index = faiss.IndexFlatIP(int(db.shape[1]))
        if db.device.type == "cuda":
            if not hasattr(faiss, "StandardGpuResources"):
                raise RuntimeError("backend='faiss' on CUDA needs faiss-gpu (pip install faiss-gpu-cu12); "
                                   "use backend='torch' for GPU search or device='cpu'")
            self._res = faiss.StandardGpuResources()
            index = faiss.index_cpu_to_gpu(self._res, db.device.index or 0, index)
        index.add(np.ascontiguousarray(db.float().cpu().numpy()))
        self.index = index

    def search(self, queries: torch.Tensor, lb: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        n = int(queries.shape[0])
        if n == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        d, i = self.index.search(np.ascontiguousarray(queries.float().cpu().numpy()), 1)
        return i[:, 0].astype(np.int64), d[:, 0].astype(np.float32)


class CachedNN:
    """Memoised NN from one map (queries, float32 [Mq, D]) into an index over the other map.

    Why: FRM re-queries the same pixels (many start points flow into the same basin) and the symmetric
    extraction queries the same two directions twice; the answer for a pixel never changes, so each
    pixel is searched at most once. Results are identical to uncached searches.
    """

    def __init__(self, queries: torch.Tensor, index: NNIndex):
        self.queries = queries
        self.index = index
        self.nn = np.full(int(queries.shape[0]), -1, dtype=np.int64)
        self.score = np.zeros(int(queries.shape[0]), dtype=np.float32)
        self.n_searched = 0

    def __call__(self, flat: np.ndarray, lb: np.ndarray | None = None) -> np.ndarray:
        """flat: int64 [n] pixel indices in the query map -> int64 [n] flat indices in the other map.

        lb: optional float32 [n] score already achieved for each query (search hint, see NNIndex)."""
        uniq, inv = np.unique(flat, return_inverse=True)
        need = self.nn[uniq] < 0
        todo = uniq[need]
        if len(todo):
            hint = None
            if lb is not None:
                best = np.full(len(uniq), -np.inf, dtype=np.float32)
                np.maximum.at(best, inv.ravel(), lb.astype(np.float32))
                hint = best[need]
            sel = torch.from_numpy(todo).to(self.queries.device)
            i, v = self.index.search(self.queries[sel], hint)
            self.nn[todo] = i
            self.score[todo] = v
            self.n_searched += len(todo)
        return self.nn[flat]
