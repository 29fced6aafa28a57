"""Sparse global alignment (MASt3R paper, sec. "sparse global alignment"), torch on CPU or GPU.

Parameters: per view a pose (quaternion + translation, relative to its kinematic-chain parent),
a log scale, log focal (+ principal point) and one log-depth correction per anchor. Every
matched pixel's 3D point is ``anchor depth x fixed offset`` along its ray, moved to the world
by its view's pose. Two stages:

1. 3D matching: poses, scales and anchor depths minimise the confidence-weighted robust
   distance between the 3D points of matched pixels (``gamma1``, lr ``lr1``, ``niter1``).
2. 2D reprojection: the same plus intrinsics minimise the robust pixel distance between each
   match and the re-projection of its partner's 3D point (``gamma2``, lr ``lr2``, ``niter2``).

Pairs with poor matches but a cross-view pointmap add a pointmap regression term (anchors vs
the pair's X11 / X21, in the first camera) to both stages. The mean log scale and each view's
mean anchor correction are held at 0, so the metric scale of the input pointmaps / depth is
kept (a 3D loss alone would otherwise shrink the scene).
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch

from mast3r_ros.geometry.transforms import invert, nearest_rotation
from mast3r_ros.mapping.alignment_config import AlignmentConfig
from mast3r_ros.mapping.kinematic import (
    chain_poses,
    compose_tree,
    quat_to_rotmat,
    root_tree,
    rotmat_to_quat,
    spanning_tree,
)
from mast3r_ros.mapping.problem import Problem, build_problem
from mast3r_ros.mapping.types import AlignmentResult, MappingError, PairData, ViewData


def learning_rate(it: int, niter: int, lr: float, schedule: str, end_ratio: float) -> float:
    """Learning rate at iteration ``it`` of ``niter`` ('cosine' or 'linear' decay to lr*end_ratio)."""
    t = it / max(niter - 1, 1)
    lo = lr * end_ratio
    if schedule == "cosine":
        return lo + (lr - lo) * 0.5 * (1 + math.cos(math.pi * t))
    if schedule == "linear":
        return lr + (lo - lr) * t
    raise MappingError(f"schedule must be 'cosine' or 'linear', got {schedule!r}")


def gamma_loss(d: torch.Tensor, gamma: float, eps: float) -> torch.Tensor:
    """Robust loss ``(d + eps)^gamma - eps^gamma``: gamma < 1 flattens large residuals."""
    return (d + eps) ** gamma - eps ** gamma


def initial_poses(prob: Problem, mode: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """Kinematic chain: (parent [N], T_world_cam [N,4,4] in the root camera, local poses)."""
    scores = {k: s for k, s in prob.scores.items() if k in prob.rel_pose}
    parent, order, root = root_tree(prob.n_views, spanning_tree(prob.n_views, scores, mode))
    rel = {}
    for v in range(prob.n_views):
        p = int(parent[v])
        if p == v:
            continue
        cands = [(prob.scores.get((p, v), -1), prob.rel_pose.get((p, v))),
                 (prob.scores.get((v, p), -1), None if (v, p) not in prob.rel_pose
                  else invert(prob.rel_pose[(v, p)]))]
        rel[v] = max((c for c in cands if c[1] is not None), key=lambda c: c[0])[1]
    return parent, chain_poses(parent, order, rel), rel


class _Model:
    """Parameters and the differentiable forward model of one problem."""

    def __init__(self, prob: Problem, cfg: AlignmentConfig, parent: np.ndarray, local: np.ndarray,
                 fixed: np.ndarray):
        dt = getattr(torch, cfg.dtype)
        dev = torch.device(cfg.device)
        self.cfg, self.prob, self.n = cfg, prob, prob.n_views
        def T(a, d=dt) -> torch.Tensor:
            return torch.as_tensor(np.asarray(a), dtype=d, device=dev)

        self.parent = T(parent, torch.int64)
        self.fixed = T(fixed, torch.bool)
        q0, t0 = rotmat_to_quat(local[:, :3, :3]), local[:, :3, 3]
        self.q0, self.t0 = T(q0), T(t0)
        self.q = torch.nn.Parameter(T(q0).clone())
        self.t = torch.nn.Parameter(T(t0).clone())
        self.log_s = torch.nn.Parameter(torch.zeros(self.n, dtype=dt, device=dev))
        K0 = prob.K0
        nf = 1 if cfg.shared_intrinsics else self.n
        f0 = np.sqrt(K0[:, 0, 0] * K0[:, 1, 1])
        self.log_f = torch.nn.Parameter(T(np.log(f0[:nf] if nf == self.n else [f0.mean()])))
        pp0 = K0[:, :2, 2]
        self.pp = torch.nn.Parameter(T(pp0 if nf == self.n else pp0.mean(0, keepdims=True)))
        self.f_ratio = T(K0[:, 1, 1] / K0[:, 0, 0])  # fy / fx kept from the initial K
        # features in a per-view padded layout [N, Fmax] so that the camera-to-world transform
        # is one batched matmul (gathering a 3x3 per feature is several times slower on CPU)
        lay = _layouts(prob)
        # only anchors some feature / fallback term uses are parameters (a 640x480 view has
        # 4800 anchors, a few hundred carry matches); others follow their view's scale
        used = np.unique(np.concatenate([prob.feat_anchor, prob.fb_anchor]))
        used = used[prob.anchor_z0[used] > 0]
        self.used_full = used
        compact = np.full(len(prob.anchor_z0), 0, np.int64)
        compact[used] = np.arange(len(used))
        self.z0o = T(lay["z0o"])                  # [N,Fmax] anchor depth x offset (0 = padding)
        self.fxy = T(lay["fxy"])                  # [N,Fmax,2]
        self.fa = T(compact[lay["fa"]], torch.int64)  # [N,Fmax] compact anchor index
        self.ms = T(lay["ms"], torch.int64)       # [M,2] slots of the two ends of each match
        self.mw = T(prob.match_w)
        self.obs_src = T(lay["obs_src"], torch.int64)  # [N,Omax] slot of the reprojected point
        self.obs_xy, self.obs_w = T(lay["obs_xy"]), T(lay["obs_w"])  # [N,Omax,2], [N,Omax]
        self.z0, self.axy = T(prob.anchor_z0[used]), T(prob.anchor_xy[used])
        self.aview = T(prob.anchor_view[used], torch.int64)
        self.fba, self.fbr = T(compact[prob.fb_anchor], torch.int64), T(prob.fb_ref, torch.int64)
        self.fbt, self.fbw = T(prob.fb_target), T(prob.fb_w)
        self.delta = torch.nn.Parameter(torch.zeros(len(used), dtype=dt, device=dev))
        cnt = np.bincount(prob.anchor_view[used], minlength=self.n)
        self.used_count = T(np.maximum(cnt, 1))
        self._rays: torch.Tensor | None = None  # cached while intrinsics are constant

    def parameters(self) -> list[torch.nn.Parameter]:
        return [self.q, self.t, self.log_s, self.log_f, self.pp, self.delta]

    def poses(self) -> torch.Tensor:
        """[N,4,4] camera-to-world."""
        q = torch.where(self.fixed[:, None], self.q0, self.q)
        t = torch.where(self.fixed[:, None], self.t0, self.t)
        local = torch.zeros(self.n, 4, 4, dtype=q.dtype, device=q.device)
        local[:, :3, :3] = quat_to_rotmat(q)
        local[:, :3, 3] = t
        local[:, 3, 3] = 1
        return compose_tree(self.parent, local)

    def intrinsics(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(fx [N], pp [N,2]); fy = fx * f_ratio."""
        f = self.log_f.exp().expand(self.n) if self.log_f.shape[0] == 1 else self.log_f.exp()
        pp = self.pp.expand(self.n, 2) if self.pp.shape[0] == 1 else self.pp
        return f, pp

    def view_log_scale(self) -> torch.Tensor:
        """[N] per-view log scale, mean 0 (gauge)."""
        return self.log_s - self.log_s.mean()

    def log_depth_corr(self) -> torch.Tensor:
        """[U] log correction of the used anchors, scale gauge removed (see module doc)."""
        if not self.cfg.optimize_depth:
            return torch.zeros_like(self.delta)
        mean = torch.zeros_like(self.log_s).index_add_(0, self.aview, self.delta) / self.used_count
        return self.delta - mean[self.aview] + self.view_log_scale()[self.aview]

    def forward(self, stage: int) -> torch.Tensor:
        cfg = self.cfg
        Tw = self.poses()
        f, pp = self.intrinsics()
        fy = f * self.f_ratio
        corr = self.log_depth_corr()
        R, t = Tw[:, :3, :3], Tw[:, :3, 3]
        z = self.z0o * torch.exp(corr.index_select(0, self.fa.reshape(-1)).view_as(self.z0o))
        ray = self._rays if self._rays is not None else self.rays(f, pp, fy)
        Xw = ((ray * z[..., None]) @ R.transpose(1, 2) + t[:, None]).reshape(-1, 3)  # [N*Fmax,3]
        loss = torch.zeros((), dtype=Xw.dtype, device=Xw.device)
        if len(self.mw):
            if stage == 1:
                d = (Xw.index_select(0, self.ms[:, 0]) - Xw.index_select(0, self.ms[:, 1])).norm(dim=-1)
                loss = (self.mw * gamma_loss(d, cfg.gamma1, 1e-4)).sum() / self.mw.sum()
            else:  # every observation: a point of another view re-projected into this view
                P = Xw.index_select(0, self.obs_src.reshape(-1)).view(*self.obs_src.shape, 3)
                Xc = (P - t[:, None]) @ R                               # R^T (X - t), row form
                zc = Xc[..., 2].clamp_min(1e-3)
                uv = torch.stack([f[:, None] * Xc[..., 0] / zc + pp[:, :1],
                                  fy[:, None] * Xc[..., 1] / zc + pp[:, 1:]], -1)
                d = (uv - self.obs_xy).norm(dim=-1)
                loss = (self.obs_w * gamma_loss(d, cfg.gamma2, 1e-2)).sum() / self.obs_w.sum()
        if cfg.depth_prior[stage - 1] > 0 and cfg.optimize_depth:
            loss = loss + cfg.depth_prior[stage - 1] * (corr * corr).mean()
        if len(self.fba):
            av = self.aview[self.fba]
            xy = self.axy[self.fba]
            za = self.z0[self.fba] * torch.exp(corr[self.fba])
            ray = torch.stack([(xy[:, 0] - pp[av, 0]) / f[av], (xy[:, 1] - pp[av, 1]) / fy[av],
                               torch.ones_like(za)], -1)
            Xa = torch.einsum("fij,fj->fi", R[av], ray * za[:, None]) + t[av]
            tgt = torch.einsum("fij,fj->fi", R[self.fbr], self.fbt) + t[self.fbr]
            d = (Xa - tgt).norm(dim=-1)
            loss = loss + cfg.fallback_weight * (self.fbw * gamma_loss(d, cfg.gamma1, 1e-4)).sum() / self.fbw.sum()
        return loss

    def rays(self, f: torch.Tensor, pp: torch.Tensor, fy: torch.Tensor) -> torch.Tensor:
        """[N,Fmax,3] unit-depth rays of the feature pixels (padding slots: anything finite)."""
        return torch.stack([(self.fxy[..., 0] - pp[:, :1]) / f[:, None],
                            (self.fxy[..., 1] - pp[:, 1:]) / fy[:, None], torch.ones_like(self.z0o)], -1)

    def run_stage(self, stage: int, params: list, lr: float, niter: int, progress: bool) -> list[float]:
        # only the stage's parameters carry gradients; with fixed intrinsics the feature rays are
        # constants, computed once (the divisions were the costliest op of a CPU iteration)
        ids = {id(p) for p in params}
        for p in self.parameters():
            p.requires_grad_(id(p) in ids)
        self._rays = None
        if not any(id(p) in ids for p in (self.log_f, self.pp)):
            with torch.no_grad():
                f, pp = self.intrinsics()
                self._rays = self.rays(f, pp, f * self.f_ratio)
        opt = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.9))
        losses = []
        it_range = range(niter)
        if progress:
            from tqdm import tqdm
            it_range = tqdm(it_range, desc=f"alignment stage {stage}", unit="it")
        for it in it_range:
            for g in opt.param_groups:
                g["lr"] = learning_rate(it, niter, lr, self.cfg.schedule, self.cfg.lr_end_ratio)
            opt.zero_grad(set_to_none=True)
            loss = self.forward(stage)
            if not torch.isfinite(loss):
                raise MappingError(f"alignment stage {stage} diverged at iteration {it} (loss {loss.item()})")
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        return losses


def _layouts(prob: Problem) -> dict:
    """Padded per-view layouts of features and re-projection observations (see _Model)."""
    n, F = prob.n_views, len(prob.feat_view)
    order = np.argsort(prob.feat_view, kind="stable")
    counts = np.bincount(prob.feat_view, minlength=n)
    fmax = max(int(counts.max()) if F else 1, 1)
    rank = np.empty(F, np.int64)
    rank[order] = np.arange(F) - np.repeat(np.cumsum(counts) - counts, counts)
    slot = prob.feat_view * fmax + rank
    z0o = np.zeros(n * fmax)
    z0o[slot] = prob.anchor_z0[prob.feat_anchor] * prob.feat_offset
    fxy = np.zeros((n * fmax, 2))
    fxy[slot] = prob.feat_xy
    fa = np.zeros(n * fmax, np.int64)
    fa[slot] = prob.feat_anchor
    ms = np.stack([slot[prob.match_a], slot[prob.match_b]], 1)
    # observations: (view of a, pixel of a, point of b) for both directions of every match
    obs_view = np.concatenate([prob.feat_view[prob.match_a], prob.feat_view[prob.match_b]])
    obs_xy = np.concatenate([prob.match_xy[:, 0], prob.match_xy[:, 1]])
    obs_src = np.concatenate([ms[:, 1], ms[:, 0]])
    obs_w = np.concatenate([prob.match_w, prob.match_w])
    o = np.argsort(obs_view, kind="stable")
    oc = np.bincount(obs_view, minlength=n)
    omax = max(int(oc.max()) if len(obs_view) else 1, 1)
    orank = np.empty(len(o), np.int64)
    orank[o] = np.arange(len(o)) - np.repeat(np.cumsum(oc) - oc, oc)
    oslot = obs_view * omax + orank
    P_src, P_xy, P_w = np.zeros(n * omax, np.int64), np.zeros((n * omax, 2)), np.zeros(n * omax)
    P_src[oslot], P_xy[oslot], P_w[oslot] = obs_src, obs_xy, obs_w
    return {"z0o": z0o.reshape(n, fmax), "fxy": fxy.reshape(n, fmax, 2), "fa": fa.reshape(n, fmax),
            "ms": ms, "obs_src": P_src.reshape(n, omax), "obs_xy": P_xy.reshape(n, omax, 2),
            "obs_w": P_w.reshape(n, omax)}


def sparse_global_alignment(views: list[ViewData], pairs: list[PairData],
                            config: AlignmentConfig | None = None,
                            init_T_world_cam: np.ndarray | None = None,
                            fixed: np.ndarray | None = None, progress: bool = False) -> AlignmentResult:
    """Estimate camera poses, intrinsics and depths of ``views`` from pairwise predictions.

    Args:
        views: N :class:`ViewData`.
        pairs: :class:`PairData` list (see :mod:`mast3r_ros.mapping.pairs` for selection).
        config: :class:`AlignmentConfig`.
        init_T_world_cam: optional [N,4,4] float64 warm start (camera-to-world, metres). Without
            it poses start from the kinematic chain of pairwise relative poses.
        fixed: optional [N] bool, views whose pose is kept at ``init_T_world_cam`` (known poses).
            Default with a warm start: view 0 is fixed (gauge); with the chain: the root. With fixed
            views, ``init_T_world_cam`` may hold NaN for the others: they start from the kinematic
            chain, moved rigidly so that the first fixed view lands on its known pose.
    Raises:
        MappingError: no usable pair, disconnected pair graph, divergence.
    """
    cfg = config or AlignmentConfig()
    n = len(views)
    if n < 2:
        raise MappingError(f"need at least 2 views, got {n}")
    t0 = time.perf_counter()
    prob = build_problem(views, pairs, cfg.subsample, cfg.canonical_mode, cfg.known_intrinsics, cfg.check)
    timings = {"prepare": time.perf_counter() - t0}
    t0 = time.perf_counter()
    if init_T_world_cam is None:
        if fixed is not None and np.any(fixed):
            raise MappingError("fixed poses need init_T_world_cam (the known poses)")
        parent, T_init, rel = initial_poses(prob, cfg.kinematic_mode)
        local = T_init.copy()
        for v, T in rel.items():
            local[v] = T
        fixed_mask = parent == np.arange(n)
        # output frame: view 0's camera (the chain's root is an arbitrary view); G is applied
        # to the optimised poses in _result, so view 0 is exactly the identity there
        T_init = invert(T_init[0]) @ T_init
        G = None
    else:
        T_init = np.asarray(init_T_world_cam, np.float64).reshape(n, 4, 4).copy()
        fixed_mask = np.zeros(n, bool) if fixed is None else np.asarray(fixed, bool).copy()
        unknown = np.isnan(T_init).any(axis=(1, 2))
        if unknown.any():
            if (unknown & fixed_mask).any() or not fixed_mask.any():
                raise MappingError("a warm start with unknown (NaN) poses needs known poses for every fixed view, "
                                   "and at least one fixed view")
            _, T_chain, _ = initial_poses(prob, cfg.kinematic_mode)
            ref = int(np.argmax(fixed_mask))
            T_init[unknown] = T_init[ref] @ invert(T_chain[ref]) @ T_chain[unknown]
        parent, local = np.arange(n), T_init.copy()
        if not fixed_mask.any():
            fixed_mask[0] = True
        G = np.eye(4)
    timings["chain"] = time.perf_counter() - t0
    model = _Model(prob, cfg, parent, local, fixed_mask)
    if not len(prob.match_a) and not len(prob.fb_anchor):
        raise MappingError("no pair has usable matches or pointmaps")
    pose_params = [model.q, model.t]
    depth_params = [model.log_s, model.delta] if cfg.optimize_depth else []
    intr = [] if cfg.known_intrinsics else [model.log_f] + ([model.pp] if cfg.optimize_pp else [])
    losses = {}
    t0 = time.perf_counter()
    losses["stage1"] = model.run_stage(1, pose_params + depth_params, cfg.lr1, cfg.niter1, progress)
    timings["stage1"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    losses["stage2"] = model.run_stage(2, pose_params + depth_params + intr, cfg.lr2, cfg.niter2, progress)
    timings["stage2"] = time.perf_counter() - t0
    return _result(model, prob, G, T_init, parent, losses, timings)


@torch.no_grad()
def _result(model: _Model, prob: Problem, G: np.ndarray | None, T_init: np.ndarray, parent: np.ndarray,
            losses: dict, timings: dict) -> AlignmentResult:
    Tw = model.poses().double().cpu().numpy()
    Tw[:, :3, :3] = nearest_rotation(Tw[:, :3, :3])
    if G is None:  # chain start: express the result in view 0's camera frame
        G = invert(Tw[0])
    f, pp = model.intrinsics()
    f, pp = f.double().cpu().numpy(), pp.double().cpu().numpy()
    K = np.tile(np.eye(3), (prob.n_views, 1, 1))
    K[:, 0, 0], K[:, 1, 1] = f, f * model.f_ratio.double().cpu().numpy()
    K[:, :2, 2] = pp
    corr = np.zeros(len(prob.anchor_z0))
    if model.cfg.optimize_depth:
        corr = model.view_log_scale().double().cpu().numpy()[prob.anchor_view]
        corr[model.used_full] = model.log_depth_corr().double().cpu().numpy()
    corr = np.exp(corr)
    scales = [corr[prob.anchor_start[v]:prob.anchor_start[v + 1]].reshape(c.anchor_depth.shape)
              .astype(np.float32) for v, c in enumerate(prob.canon)]
    return AlignmentResult(
        T_world_cam=G @ Tw, K=K, T_world_cam_init=T_init, depth_scale=scales,
        canonical_depth=[c.depth for c in prob.canon], canonical_conf=[c.conf for c in prob.canon],
        parent=np.asarray(parent, np.int64), pair_status=dict(prob.status),
        pair_inliers=dict(prob.inliers), losses=losses, timings=timings,
        subsample=prob.canon[0].subsample)
