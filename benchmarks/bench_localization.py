"""Per-query localization latency by stage (features, retrieval, matching, PnP) + accuracy.

Usage::

    python benchmarks/bench_localization.py [--dataset DIR --map-frames S --query-frames S]
        [--pnp poselib opencv] [--max-queries N]

Default dataset: the 7-Scenes redkitchen copy in ``shared/data`` with the temporal split
(map ``0:598``, queries ``600:1000``); falls back to the synthetic demo room. Prints one
markdown table per front-end / PnP back-end: median and 90th-percentile seconds per stage,
plus the median pose error, so the PnP back-ends can be compared on the same matches.

MASt3R (``--frontends mast3r``, released configuration with random weights, a map of ``--top-k``
keyframes, one query): the naive per-query flow a user of the official scripts runs (both images
through the network for every keyframe, all heads, then reciprocal matching, timed twice on the same
network outputs: with scipy KD-trees, what the official ``fast_reciprocal_NNs`` uses on CPU when called
without ``dist`` / ``block_size``, and with the blocked dot-product search that the official
localization script ``visloc.py`` asks for on any device), executed in this run, next to ours in
tracking mode (keyframe nearest the prior) and in global mode (retrieval,
batched decoding), per stage, repetitions interleaved.
"""
from __future__ import annotations

# first, so that its OMP_WAIT_POLICY default (mast3r_ros/__init__.py) is in place before torch loads
# libgomp, as in the `mast3r-ros` command and the nodes
import mast3r_ros  # noqa: F401

# isort: split

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mast3r_ros.datasets.calibration import RgbdCalibration
from mast3r_ros.datasets.readers import open_dataset
from mast3r_ros.geometry.transforms import transform_points
from mast3r_ros.localization.evaluation import localize_frames, summarize
from mast3r_ros.localization.frontends import QueryFrame, make_frontend
from mast3r_ros.localization.frontends.mast3r import Mast3rFrontEnd, Mast3rFrontEndConfig
from mast3r_ros.localization.localizer import Localizer, LocalizerConfig
from mast3r_ros.localization.pose import PnPConfig, solve_pnp
from mast3r_ros.localization.retrieval import RetrievalConfig
from mast3r_ros.map import KeyframeMap
from mast3r_ros.map.build import build_map
from mast3r_ros.model import RELEASED, InferenceConfig, Mast3rModel, load_network, preprocess_array, random_network
from mast3r_ros.model.precision import cpu_flags
from mast3r_ros.paths import shared_dir

STAGES = ("features", "retrieval", "matching", "pnp", "total")


def _default_dataset() -> tuple[str, str, str]:
    seven = shared_dir() / "data" / "7scenes_redkitchen"
    if seven.exists():
        return str(seven), "0:598", "600:1000"
    from mast3r_ros.datasets.synthetic_room import default_demo_dataset, load_sequence_info

    root = default_demo_dataset()
    info = load_sequence_info(root)
    return str(root), info.map_spec, info.query_spec


def _table(title: str, records, summary: dict) -> str:
    lines = [f"### {title}", "", "| stage | median [ms] | p90 [ms] | mean [ms] |", "|---|---|---|---|"]
    for s in STAGES:
        v = np.array([r.timings[s] for r in records if s in r.timings]) * 1000
        if len(v):
            lines.append(f"| {s} | {np.median(v):.1f} | {np.percentile(v, 90):.1f} | {v.mean():.1f} |")
    te, re = summary["median_translation_m"], summary["median_rotation_deg"]
    lines += ["", f"localized {summary['n_localized']}/{summary['n_queries']}, median error "
              f"{'n/a' if te is None else f'{100 * te:.2f} cm'} / "
              f"{'n/a' if re is None else f'{re:.2f} deg'}, "
              f"recall 5cm/5deg {100 * summary['recall_5cm_5deg']:.1f} %, "
              f"25cm/2deg {100 * summary['recall_25cm_2deg']:.1f} %", ""]
    return "\n".join(lines)


def bench_classical(dataset, map_spec, query_spec, solvers, max_queries, calib=None, use_depth=False) -> None:
    frontend = make_frontend("classical")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "map"
        build_map(dataset, map_spec, frontend, path, progress=True, calib=calib)
        frames = dataset.frames(query_spec)[:max_queries]
        spec = f"{frames[0].index}:{frames[-1].index + 1}" if frames else query_spec
        for solver in solvers:
            with KeyframeMap.open(path) as kmap:
                config = LocalizerConfig(pnp=PnPConfig(solver=solver))
                loc = Localizer(kmap, make_frontend("classical"), config)
                recs = [r for r in localize_frames(loc, dataset, spec, progress=True, calib=calib,
                                                   use_depth=use_depth)
                        if r.index in {f.index for f in frames}]
            mode = "RGB-D queries (3D-3D pose, PnP fallback)" if use_depth else f"RGB queries, PnP = {solver}"
            print(_table(f"classical front-end, {mode}", recs, summarize(recs)))
            if use_depth:
                break


STAGE_NAMES = {
    "network": "network: both images encoded per pair, decoders, all heads of both views",
    "features": "query encoded once (keyframe encodings cached in the map)",
    "retrieval": "keyframe selection (tracking: nearest the prior; global: descriptor retrieval)",
    "matching": "matching (ours: batched decoders + descriptor heads + FRM; naive: FRM only)",
    "decoders": "of which decoders + heads (ours)",
    "pnp": "PnP + RANSAC + refinement (+ covariance)",
    "total": "total per query",
}
# the naive flow's reciprocal search, run on the same network outputs (benchmarks/bench_matching.py):
# the scipy KD-tree (fast_reciprocal_NNs on CPU without dist / block_size, the definition) and the
# blocked dot-product search that the official localization script, visloc.py, asks for on any device
NAIVE_MATCHERS = {"kdtree": "naive, KD-tree FRM", "dot": "naive, visloc.py's blocked-dot FRM"}


def naive_query(model, frontend, kmap, kf_ids, image, K, pnp_config) -> dict[str, float]:
    """What a user of the official scripts runs per query: for every keyframe, both images through the
    network (all heads), reciprocal matching from the keyframe's valid pixels (pixel_tol), then one PnP
    on all matches. The matching and the PnP run once per :data:`NAIVE_MATCHERS` entry on the same
    network outputs. Returns seconds: 'network', and 'matching_M', 'pnp_M', 'total_M' per matcher M."""
    from bench_matching import dot_frm, kdtree_frm  # benchmarks/ is the script's folder

    search = {"kdtree": kdtree_frm, "dot": dot_frm}
    t = {"network": 0.0, **{f"matching_{m}": 0.0 for m in NAIVE_MATCHERS}}
    q = preprocess_array(image, frontend.config.image_size)
    corr: dict[str, tuple[list, list]] = {m: ([], []) for m in NAIVE_MATCHERS}
    for kf_id in kf_ids:
        kf = kmap.get_keyframe(kf_id, arrays=["mast3r_X"], load_depth=False)
        t0 = time.perf_counter()
        k = preprocess_array(kf.image, frontend.config.image_size)
        pred_k, pred_q = model.infer_pair(k.tensor, q.tensor)
        t["network"] += time.perf_counter() - t0
        X_net = kf.arrays["mast3r_X"]
        valid = np.all(np.isfinite(X_net), axis=-1)
        step = frontend.config.subsample
        grid = np.zeros_like(valid)
        grid[step // 2::step, step // 2::step] = True
        ys, xs = np.nonzero(valid & grid)
        for m in NAIVE_MATCHERS:
            t1 = time.perf_counter()
            xy_k, xy_q = search[m](pred_k["desc"][0].numpy(), pred_q["desc"][0].numpy(),
                                   init_flat=np.unique(ys * X_net.shape[1] + xs), pixel_tol=frontend.config.pixel_tol)
            corr[m][0].append(q.transform.network_to_original(xy_q))
            corr[m][1].append(transform_points(kf.T_map_cam, X_net[xy_k[:, 1], xy_k[:, 0]].astype(np.float64)))
            t[f"matching_{m}"] += time.perf_counter() - t1
    for m, (xy_all, X_all) in corr.items():
        t0 = time.perf_counter()
        solve_pnp(np.concatenate(xy_all), np.concatenate(X_all), K, (image.shape[1], image.shape[0]), pnp_config)
        t[f"pnp_{m}"] = time.perf_counter() - t0
        t[f"total_{m}"] = t["network"] + t[f"matching_{m}"] + t[f"pnp_{m}"]
    return t


def _naive_as(t: dict[str, float], matcher: str) -> dict[str, float]:
    """One matcher's view of :func:`naive_query`'s timings, keyed by the stage names of the table."""
    return {"network": t["network"], **{s: t[f"{s}_{matcher}"] for s in ("matching", "pnp", "total")}}


class _TimedModel(Mast3rModel):
    """A :class:`Mast3rModel` that adds the seconds its ``infer`` (decoders + heads) takes to ``infer_s``."""

    infer_s = 0.0

    def infer(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return super().infer(*args, **kwargs)
        finally:
            self.infer_s += time.perf_counter() - t0


def _ours(loc: Localizer, model: _TimedModel, image, K) -> tuple:
    """One localization; its timings with 'decoders' (the part of 'matching' spent in ``infer``) added."""
    model.infer_s = 0.0
    r = loc.localize(image, K)
    return r, {**r.timings, "decoders": model.infer_s}


def bench_mast3r(dataset, map_spec: str, query_spec: str, top_k: int, repeat: int, amp: str | None,
                 checkpoint: str | None = None) -> None:
    """MASt3R front-end, released configuration with random weights (no released weights here: poses are
    meaningless, the timings are not), or the network of ``checkpoint``: the naive per-query flow next to
    ours in tracking and in global mode, repetitions interleaved, per stage."""
    net = load_network(checkpoint) if checkpoint else random_network(RELEASED)
    model = Mast3rModel(net, InferenceConfig())
    ours = _TimedModel(model.net, InferenceConfig(amp_dtype=amp))
    frontend = Mast3rFrontEnd(Mast3rFrontEndConfig(), model=ours)
    frame = dataset.frames(query_spec)[0]
    image = dataset.load_rgb(frame)
    runs: dict[str, list[dict]] = {**{m: [] for m in NAIVE_MATCHERS}, "tracking": [], "global": []}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "map"
        build_map(dataset, map_spec, frontend, path, progress=True)
        with KeyframeMap.open(path) as kmap:
            # tracking_retry off: random weights give no pose, and the tracking column is what a query
            # answered from the tracking keyframe costs (a failed one adds the global column's matching)
            config = LocalizerConfig(retrieval=RetrievalConfig(top_k=top_k, tracking_k=1, tracking_retry=False,
                                                               prior_max_dist_m=None, prior_max_angle_deg=None))
            loc = Localizer(kmap, frontend, config)
            poses = kmap.poses()
            prior = min(poses.values(), key=lambda T: np.linalg.norm(T[:3, 3] - frame.T_world_cam[:3, 3]))
            kf_ids = loc.retriever.query(frontend.query_descriptor(QueryFrame(image, dataset.K)))[0]
            for _ in range(repeat):     # interleaved: naive, tracking, global, naive, ...
                t_naive = naive_query(model, frontend, kmap, kf_ids, image, dataset.K, config.pnp)
                for m in NAIVE_MATCHERS:
                    runs[m].append(_naive_as(t_naive, m))
                loc.state.reset()
                loc.state.update(prior)           # tracking with the previous pose as the prior
                r, timings = _ours(loc, ours, image, dataset.K)
                assert r.selection == "prior", r.selection
                runs["tracking"].append(timings)
                loc.state.reset()                 # no prior: global localization
                r, timings = _ours(loc, ours, image, dataset.K)
                assert r.selection == "retrieval" and len(r.kf_ids) == len(kf_ids), (r.selection, r.kf_ids)
                runs["global"].append(timings)
    h, w = image.shape[:2]
    what = f"checkpoint {checkpoint}" if checkpoint else "released config, random weights"
    print(f"### MASt3R per query: naive flow vs ours ({what}, {w}x{h} query, "
          f"{len(kf_ids)}-keyframe map, top-k {top_k}, tracking k {config.retrieval.tracking_k}; "
          f"min / median of {repeat} interleaved runs, seconds; ours in {ours.precision}, naive in fp32)\n")
    print("| stage | " + " | ".join(NAIVE_MATCHERS.values()) + " | ours, tracking | ours, global |")
    print("|---|---|---|---|---|")
    for stage in STAGE_NAMES:
        cells = []
        for mode in runs:
            v = [r[stage] for r in runs[mode] if stage in r]
            cells.append(f"{min(v):.2f} / {np.median(v):.2f}" if v else "-")
        print(f"| {STAGE_NAMES[stage]} | " + " | ".join(cells) + " |")
    for m, name in NAIVE_MATCHERS.items():
        naive = np.median([r["total"] for r in runs[m]])
        for mode in ("tracking", "global"):
            med = np.median([r["total"] for r in runs[mode]])
            print(f"\n{mode}: {naive / med:.1f}x faster than the {name} flow (medians, same run)", end="")
    print("\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default=None)
    p.add_argument("--map-frames", default=None)
    p.add_argument("--query-frames", default=None)
    p.add_argument("--pnp", nargs="+", default=["poselib", "opencv"], choices=["poselib", "opencv"])
    p.add_argument("--max-queries", type=int, default=10_000)
    p.add_argument("--rgbd-calib", default=None, help="RGB-D calibration preset ('7scenes') or YAML")
    p.add_argument("--query-depth", action="store_true", help="RGB-D queries (3D-3D pose)")
    p.add_argument("--frontends", nargs="+", default=["classical", "mast3r"], choices=["classical", "mast3r"])
    p.add_argument("--mast3r-map-frames", default=None, help="map frames of the MASt3R run (few: CPU)")
    p.add_argument("--mast3r-query-frames", default=None, help="query frames of the MASt3R run")
    p.add_argument("--top-k", type=int, default=5, help="keyframes retrieved per global query (MASt3R run)")
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--checkpoint", default=None, help="MASt3R run: this checkpoint instead of the released "
                   "configuration with random weights (e.g. the tiny fixture checkpoint, for a quick check)")
    p.add_argument("--amp", default=None, choices=["auto", "fp32", "bf16"], help="precision of ours (MASt3R run)")
    a = p.parse_args()
    if a.dataset is None:
        root, mspec, qspec = _default_dataset()
    else:
        root, mspec, qspec = a.dataset, a.map_frames, a.query_frames
    dataset = open_dataset(root)
    flags = cpu_flags()
    print(f"CPU features: AMX {'yes' if 'amx_bf16' in flags else 'no'}, avx512_bf16 "
          f"{'yes' if 'avx512_bf16' in flags else 'no'}; {torch.get_num_threads()} threads")
    print(f"dataset {root}: map {a.map_frames or mspec}, queries {a.query_frames or qspec}\n")
    calib = RgbdCalibration.load(a.rgbd_calib) if a.rgbd_calib else None
    if "classical" in a.frontends:
        bench_classical(dataset, a.map_frames or mspec, a.query_frames or qspec, a.pnp, a.max_queries, calib,
                        a.query_depth)
    if "mast3r" in a.frontends:
        few_map, few_query = _few(dataset, a.map_frames or mspec, a.top_k), _few(dataset, a.query_frames or qspec, 2)
        bench_mast3r(dataset, a.mast3r_map_frames or few_map, a.mast3r_query_frames or few_query, a.top_k,
                     a.repeat, a.amp, a.checkpoint)


def _few(dataset, spec: str, n: int) -> str:
    """A spec selecting at most ``n`` frames spread evenly over ``spec`` (the released network is slow
    on CPU); assumes the frames of ``spec`` are evenly spaced, as in the datasets used here."""
    idx = [f.index for f in dataset.frames(spec)]
    step = max(1, idx[len(idx) // n] - idx[0]) if len(idx) > n > 1 else 1
    return f"{idx[0]}:{idx[0] + (n - 1) * step + 1}:{step}"


if __name__ == "__main__":
    main()
