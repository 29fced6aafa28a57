"""Kinematic chain: a spanning tree over the pair graph that roots every camera pose.

Why: parametrising each pose relative to its parent in a tree of strong pairs gives the
optimiser a good initial configuration (the chained pairwise poses) and couples cameras along
reliable edges, so a change of one pose moves its whole subtree rigidly. Two tree builders:

* ``'mst'``: maximum-score spanning tree (minimum spanning tree on ``max_score - score``).
* ``'hclust-ward'``: agglomerative (Ward) clustering of the views on ``1 - normalised score``;
  each merge of two clusters adds the best-scoring pair between them, so tight groups of views
  are chained internally before being linked to each other.

The root is the tree's centre (smallest height), which keeps chains short.
"""
from __future__ import annotations

from collections import deque

import numpy as np
import torch

from mast3r_ros.mapping.types import MappingError

TREE_MODES = ("mst", "hclust-ward")


def spanning_tree(n: int, scores: dict[tuple[int, int], float], mode: str = "mst") -> list[tuple[int, int]]:
    """Undirected tree edges over views 0..n-1 from pair scores (higher = stronger pair).

    Raises:
        MappingError: unknown mode, or the pair graph does not connect all views.
    """
    if mode not in TREE_MODES:
        raise MappingError(f"kinematic mode must be one of {TREE_MODES}, got {mode!r}")
    best: dict[tuple[int, int], float] = {}
    for (i, j), s in scores.items():
        if s > 0 and i != j:
            key = (min(i, j), max(i, j))
            best[key] = max(best.get(key, 0.0), float(s))
    edges = _mst(n, best) if mode == "mst" else _hclust(n, best)
    if len(edges) != n - 1:
        comps = connected_components(n, list(best))
        raise MappingError(f"the pair graph is not connected: {len(comps)} groups of views "
                           f"(sizes {sorted(len(c) for c in comps)[::-1][:5]}); add pairs or drop views")
    return edges


def connected_components(n: int, edges: list[tuple[int, int]]) -> list[list[int]]:
    """Connected components (lists of view indices, largest first)."""
    adj = [[] for _ in range(n)]
    for i, j in edges:
        adj[i].append(j)
        adj[j].append(i)
    seen, comps = np.zeros(n, bool), []
    for s in range(n):
        if seen[s]:
            continue
        comp, q = [], deque([s])
        seen[s] = True
        while q:
            u = q.popleft()
            comp.append(u)
            for v in adj[u]:
                if not seen[v]:
                    seen[v] = True
                    q.append(v)
        comps.append(sorted(comp))
    return sorted(comps, key=len, reverse=True)


def _mst(n: int, best: dict) -> list[tuple[int, int]]:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import minimum_spanning_tree

    if not best:
        return []
    ij = np.array(list(best), dtype=np.int64)
    s = np.array(list(best.values()))
    cost = s.max() + 1.0 - s  # strictly positive: scipy treats 0 as "no edge"
    tree = minimum_spanning_tree(coo_matrix((cost, (ij[:, 0], ij[:, 1])), shape=(n, n))).tocoo()
    return [(int(a), int(b)) for a, b in zip(tree.row, tree.col)]


def _hclust(n: int, best: dict) -> list[tuple[int, int]]:
    from scipy.cluster.hierarchy import linkage

    if n < 2 or not best:
        return []
    S = np.zeros((n, n))
    for (i, j), s in best.items():
        S[i, j] = S[j, i] = s
    S = S / S.max()
    D = 1.0 - S
    np.fill_diagonal(D, 0.0)
    Z = linkage(D[np.triu_indices(n, 1)], method="ward")
    members = {i: [i] for i in range(n)}
    edges = []
    for k, (a, b, _, _) in enumerate(Z):
        A, B = members.pop(int(a)), members.pop(int(b))
        sub = S[np.ix_(A, B)]
        if sub.max() > 0:
            ia, ib = np.unravel_index(int(np.argmax(sub)), sub.shape)
            edges.append((A[ia], B[ib]))
        members[n + k] = A + B
    if len(edges) < n - 1:  # Ward merged clusters with no pair between them: patch with MST edges
        comps = connected_components(n, edges)
        comp_of = {v: c for c, vs in enumerate(comps) for v in vs}
        links = {}
        for (i, j), s in best.items():
            ci, cj = comp_of[i], comp_of[j]
            if ci != cj:
                key = (min(ci, cj), max(ci, cj))
                if s > links.get(key, (0, None))[0]:
                    links[key] = (s, (i, j))
        cm = _mst(len(comps), {k: v[0] for k, v in links.items()})
        edges += [links[(min(a, b), max(a, b))][1] for a, b in cm]
    return edges


def root_tree(n: int, edges: list[tuple[int, int]], root: int | None = None
              ) -> tuple[np.ndarray, np.ndarray, int]:
    """Orient a tree: (parent [n] int64 with parent[root] = root, BFS order [n], root).

    The default root is the tree centre (middle of a longest path), minimising the height.
    """
    adj = [[] for _ in range(n)]
    for i, j in edges:
        adj[i].append(j)
        adj[j].append(i)

    def bfs(s):
        par = np.full(n, -1, np.int64)
        dist = np.full(n, -1, np.int64)
        par[s], dist[s] = s, 0
        order, q = [], deque([s])
        while q:
            u = q.popleft()
            order.append(u)
            for v in sorted(adj[u]):
                if dist[v] < 0:
                    dist[v], par[v] = dist[u] + 1, u
                    q.append(v)
        return par, dist, order

    if root is None:
        _, d0, _ = bfs(0)
        a = int(np.argmax(d0))
        par_a, da, _ = bfs(a)
        b = int(np.argmax(da))
        path = [b]
        while path[-1] != a:
            path.append(int(par_a[path[-1]]))
        root = path[len(path) // 2]
    parent, dist, order = bfs(root)
    if (dist < 0).any():
        raise MappingError("the kinematic tree does not reach every view")
    return parent, np.asarray(order, np.int64), int(root)


def chain_poses(parent: np.ndarray, order: np.ndarray, T_parent_child: dict[int, np.ndarray]) -> np.ndarray:
    """World poses (root frame) from relative poses along the tree: [n,4,4] float64.

    ``T_parent_child[v]`` is the [4,4] pose of view v in its parent's camera.
    """
    n = len(parent)
    T = np.tile(np.eye(4), (n, 1, 1))
    for v in order:
        if parent[v] != v:
            T[v] = T[parent[v]] @ T_parent_child[int(v)]
    return T


def quat_to_rotmat(q: torch.Tensor) -> torch.Tensor:
    """[...,4] quaternions (x, y, z, w; any norm) -> [...,3,3] rotation matrices."""
    q = q / q.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    x, y, z, w = q.unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
        2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
        2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1).reshape(*q.shape[:-1], 3, 3)


def rotmat_to_quat(R: np.ndarray) -> np.ndarray:
    """[...,3,3] rotation matrices -> [...,4] quaternions (x, y, z, w)."""
    from scipy.spatial.transform import Rotation

    return Rotation.from_matrix(np.asarray(R, np.float64).reshape(-1, 3, 3)).as_quat().reshape(
        *np.shape(R)[:-2], 4)


def compose_tree(parent: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
    """World poses from local (parent-relative) poses by pointer doubling.

    Why doubling: a sequence gives trees of height ~N; composing level by level would cost N
    small ops per iteration, doubling costs log2(N) batched matrix products.

    Args:
        parent: [n] int64 parent index (roots point to themselves).
        local: [n,4,4] pose of each view in its parent's camera; for roots, their world pose.
    Returns:
        [n,4,4] camera-to-world poses.
    """
    n = parent.shape[0]
    is_root = parent == torch.arange(n, device=parent.device)
    eye = torch.eye(4, dtype=local.dtype, device=local.device).expand(n, 4, 4)
    acc = torch.where(is_root[:, None, None], eye, local)  # invariant: acc[v] = T_{anc[v]}_v
    anc = parent
    for _ in range(int(np.ceil(np.log2(max(n, 2)))) + 1):
        if bool((anc[anc] == anc).all()):
            break
        acc = acc[anc] @ acc
        anc = anc[anc]
    if not bool((anc[anc] == anc).all()):
        raise MappingError("kinematic tree has a cycle")
    return local[anc] @ acc
