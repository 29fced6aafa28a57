"""Exact MIPS with tile bounds (branch and bound), for dense descriptor maps on CPU.

Why: dense descriptor maps are spatially smooth, so the pixels of a small s x s tile are close to their
centroid c; for every pixel x of the tile, q . x <= q . c + |q| r (Cauchy-Schwarz, r = max |x - c|).
Once a lower bound lb of the best score is known (the best pixel of the most promising coarse tile),
only the tiles with q . c + |q| r >= lb can hold the maximum; typically < 1 % of the tiles. The bounds of
all tiles are one matmul per query chunk; thresholding and compaction run in numpy (an order of
magnitude faster than torch's comparison/nonzero kernels on CPU). The surviving (tile, query) pairs
are scored exactly with batched matmuls (same float32 24-term dot products as the blocked search), and
queries with many surviving tiles (no structure to exploit) fall back to the blocked search. The answer
is the same exact argmax with the same tie rule (lowest flat index among equal maxima); the bound is
inflated by a margin far above float32 rounding so no candidate is lost to rounding.

Memory layout: the map is stored once, permuted tile-major (coarse 8x8 tiles, inside each its 2x2 fine
4x4 tiles, inside each its pixels row-major), so fine and coarse tiles are both contiguous views. Tiles
on the right/bottom border repeat their last valid row/column, which never changes a maximum or a tie.
"""
from __future__ import annotations

import numpy as np
import torch

from mast3r_ros.matching.index.backends import TorchBlockedIndex

FINE, COARSE = 4, 8


def tile_permutation(H: int, W: int) -> torch.Tensor:
    """int64 [Tc, 64] flat pixel indices y*W+x of the coarse 8x8 tiles (row-major tiles), each ordered
    as its four 4x4 fine tiles (row-major) with their pixels row-major; border rows/cols repeated."""
    ty, tx = -(-H // COARSE), -(-W // COARSE)
    c = torch.arange(COARSE)
    sub = (c // FINE) * FINE                         # offset of the fine tile holding coordinate c
    # order inside a coarse tile: (fine row, fine col, pixel row, pixel col)
    fy = sub.view(2, FINE)[:, 0].view(2, 1, 1, 1)
    fx = sub.view(2, FINE)[:, 0].view(1, 2, 1, 1)
    py = torch.arange(FINE).view(1, 1, FINE, 1)
    px = torch.arange(FINE).view(1, 1, 1, FINE)
    oy = (fy + py).expand(2, 2, FINE, FINE).reshape(-1)   # [64] row offset inside the coarse tile
    ox = (fx + px).expand(2, 2, FINE, FINE).reshape(-1)   # [64] col offset
    y0 = (torch.arange(ty) * COARSE).view(ty, 1, 1)
    x0 = (torch.arange(tx) * COARSE).view(1, tx, 1)
    ys = (y0 + oy.view(1, 1, -1)).clamp(max=H - 1)
    xs = (x0 + ox.view(1, 1, -1)).clamp(max=W - 1)
    return (ys * W + xs).reshape(ty * tx, COARSE * COARSE)


class TorchPrunedIndex:
    """Exact MIPS over a dense map ``desc`` float32 [H, W, D] (CPU); rows = flat indices y*W+x.

    max_tiles: fraction of the fine tiles above which a query is searched by brute force instead of
    pair scoring (random maps, where nothing can be pruned, go to the blocked search). Scoring a pixel
    through gathered tiles costs ~10-20x a pixel of the blocked matmul, so pruning pays only when few
    tiles survive; the choice of 0.1 is logged in benchmarks/README.md.
    chunk_queries: queries per bound matrix [T, chunk] (~12 MB for 384x512 maps at 256).
    """

    def __init__(self, desc: torch.Tensor, max_tiles: float = 0.1, chunk_queries: int = 256,
                 chunk_pairs: int = 1 << 15, lb_tiles: int = 1):
        H, W, D = desc.shape
        self.size = H * W
        self.db = desc.reshape(-1, D).float().contiguous()
        self.fallback = TorchBlockedIndex(self.db)
        perm = tile_permutation(H, W)                                     # [Tc, 64]
        self.members = perm.reshape(-1, FINE * FINE)                      # [T, 16] fine tiles
        xt = self.db.index_select(0, perm.reshape(-1))                    # [Tc*64, D] tile-major copy
        self.xt = xt.view(-1, FINE * FINE, D)                             # [T, 16, D]
        self.cxt = xt.view(-1, COARSE * COARSE, D)                        # [Tc, 64, D]
        c = self.xt.mean(dim=1)                                           # [T, D] fine centroids
        r = torch.linalg.vector_norm(self.xt - c[:, None], dim=-1).amax(dim=1)
        # margin >> float32 rounding of centroids, radii and 24-term dots (~1e-6 relative)
        scale = float(torch.linalg.vector_norm(self.db, dim=1).max()) + 1e-30
        r = r * (1 + 1e-5) + 1e-4 * scale
        ones = torch.ones(len(c), 1)
        self.caugT = torch.cat([c, r[:, None], ones], dim=1).contiguous()  # [T, D+2]: [c, r, 1]
        self.ccT = c.view(-1, 4, D).mean(dim=1).T.contiguous()            # [D, Tc] coarse centroids
        self.max_tiles = max(1, int(max_tiles * self.members.shape[0]))
        self.chunk_queries = int(chunk_queries)
        self.chunk_pairs = int(chunk_pairs)
        self.lb_tiles = max(1, min(int(lb_tiles), self.ccT.shape[1]))

    @torch.no_grad()
    def search(self, queries: torch.Tensor, lb: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        n = int(queries.shape[0])
        if n == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        q = queries.float().contiguous()
        lower = self._lower_bound(q, lb)
        qi, ti, hard = self._candidate_pairs(q, lower)
        idx = np.empty(n, dtype=np.int64)
        val = np.empty(n, dtype=np.float32)
        if hard.any():
            h = np.flatnonzero(hard)
            idx[h], val[h] = self.fallback.search(q[torch.from_numpy(h)])
        easy = np.flatnonzero(~hard)
        if len(easy):
            v = self._score_pairs(q, qi, ti)
            best_v = _segment_max(n, qi, v)
            win = np.flatnonzero(v == best_v[qi])            # pairs reaching their query's maximum
            best_v, best_i = self._resolve(q, n, qi[win], ti[win])
            idx[easy], val[easy] = best_i[easy], best_v[easy]
        return idx, val

    def _resolve(self, q: torch.Tensor, n: int, wq: np.ndarray, wt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel of the maximum for the winning (query, tile) pairs: rescoring only these few tiles is
        cheaper than keeping argmax indices for every pair. Among equal maxima the lowest flat index
        wins (first maximum inside a row-major tile, then the minimum over tiles)."""
        qg = q.index_select(0, torch.from_numpy(wq))[:, None, :]                  # [w, 1, D]
        tsel = torch.from_numpy(wt)
        r = torch.bmm(qg, self.xt.index_select(0, tsel).transpose(1, 2))[:, 0]     # [w, 16]
        rv, k = r.max(dim=1)
        f = torch.gather(self.members.index_select(0, tsel), 1, k[:, None])[:, 0].numpy()
        rv = rv.numpy()
        best_v = _segment_max(n, wq, rv)
        ok = rv == best_v[wq]
        best_i = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(best_i, wq[ok], f[ok])
        return best_v, best_i

    def _lower_bound(self, q: torch.Tensor, hint: np.ndarray | None) -> np.ndarray:
        """float32 [n]: a score some database row achieves for each query (exact best pixel of the
        ``lb_tiles`` coarse tiles whose centroids score highest), raised to the caller's hint. A tighter
        bound prunes more tiles but costs more than it saves on the fixture maps (benchmarks/README.md),
        hence the default k = 1."""
        n, step, k = q.shape[0], self.chunk_queries, self.lb_tiles
        buf = torch.empty(min(step, n) * self.ccT.shape[1])       # reused: fresh [n, Tc] pages cost more
        ct = torch.empty(n, k, dtype=torch.int64)
        for s in range(0, n, step):
            m = min(step, n - s)
            b = buf[:m * self.ccT.shape[1]].view(m, -1)
            torch.mm(q[s:s + m], self.ccT, out=b)
            if k == 1:   # numpy's argmax is several times faster than torch's on CPU
                ct[s:s + m, 0] = torch.from_numpy(b.numpy().argmax(axis=1))
            else:
                ct[s:s + m] = b.topk(k, dim=1, sorted=False).indices
        pix = self.cxt.index_select(0, ct.view(-1)).view(n, -1, q.shape[1])      # [n, k*64, D]
        lb = torch.bmm(pix, q[:, :, None])[..., 0].amax(dim=1).numpy()
        if hint is not None:
            lb = np.maximum(lb, np.asarray(hint, dtype=np.float32))
        return lb

    def _candidate_pairs(self, q: torch.Tensor, lb: np.ndarray):
        """(qi, ti) int64 [P]: the (query, fine tile) pairs whose bound reaches lb, ordered by query chunk
        then tile, without the pairs of hard queries; hard: bool [n], queries with > max_tiles tiles."""
        n = q.shape[0]
        T = self.caugT.shape[0]
        # [q, |q|, -lb] . [c, r, 1] = bound - lb: one plain matmul (a bias term would cost a second pass)
        qa = torch.cat([q, torch.linalg.vector_norm(q, dim=1, keepdim=True), torch.from_numpy(-lb)[:, None]],
                       dim=1).T.contiguous()                                     # [D+2, n]
        step = self.chunk_queries
        buf = torch.empty(T * min(step, n))                 # reused; each chunk takes a contiguous [T, m]
        mask = np.empty(T * min(step, n), dtype=bool)
        hard = np.zeros(n, dtype=bool)
        qis, tis = [], []
        for s in range(0, n, step):
            m = min(step, n - s)
            b, k = buf[:T * m].view(T, m), mask[:T * m].reshape(T, m)
            torch.mm(self.caugT, qa[:, s:s + m], out=b)
            np.greater_equal(b.numpy(), 0.0, out=k)      # the tile may hold a pixel scoring >= lb
            t, j = np.divmod(np.flatnonzero(k), m)
            over = np.bincount(j, minlength=m) > self.max_tiles
            hard[s:s + m] = over
            keep = ~over[j]
            qis.append(j[keep] + s)
            tis.append(t[keep])
        if not qis:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), hard
        return np.concatenate(qis), np.concatenate(tis), hard

    def _score_pairs(self, q: torch.Tensor, qi: np.ndarray, ti: np.ndarray) -> np.ndarray:
        """Best exact score (float32 [P]) inside tile ti for query qi.

        Pairs are grouped by tile so that each tile's 16 pixels are multiplied with all its candidate
        queries in one small matmul; tiles are bucketed by candidate count to keep the padding small.
        """
        P = len(qi)
        order = np.argsort(ti, kind="stable")
        t_sorted, q_sorted = ti[order], qi[order]
        cut = np.flatnonzero(np.diff(t_sorted)) + 1
        starts = np.concatenate([[0], cut])
        counts = np.diff(np.concatenate([starts, [P]]))
        tiles = t_sorted[starts]
        by_count = np.argsort(-counts, kind="stable")
        out_v = np.empty(P, dtype=np.float32)
        pos = 0
        while pos < len(by_count):
            K = int(counts[by_count[pos]])
            nt = max(1, min(len(by_count) - pos, self.chunk_pairs // K))
            sel = by_count[pos:pos + nt]
            pos += nt
            c, st = counts[sel], starts[sel]
            slot = np.arange(K)
            valid = slot[None, :] < c[:, None]                                   # [nt, K]
            src = st[:, None] + np.where(valid, slot[None, :], 0)                # pad: the tile's 1st pair
            qg = q.index_select(0, torch.from_numpy(q_sorted[src].ravel())).view(nt, K, -1)
            tsel = torch.from_numpy(tiles[sel])
            sc = torch.bmm(qg, self.xt.index_select(0, tsel).transpose(1, 2))     # [nt, K, 16] exact dots
            v = sc.amax(dim=2)                            # ~2x cheaper than max with indices on CPU
            out_v[order[src[valid]]] = v.numpy()[valid]
        return out_v


def _segment_max(n: int, seg: np.ndarray, v: np.ndarray) -> np.ndarray:
    """float32 [n]: max of v over the entries of each segment id (-inf for empty segments)."""
    return torch.full((n,), -float("inf")).scatter_reduce_(0, torch.from_numpy(seg), torch.from_numpy(v),
                                                           "amax").numpy()
