"""Per-query localization latency by stage (features, retrieval, matching, PnP) + accuracy.

Usage::

    python benchmarks/bench_localization.py [--dataset DIR --map-frames S --query-frames S]
        [--pnp poselib opencv] [--max-queries N]

Default dataset: the 7-Scenes redkitchen copy in ``shared/data`` with the temporal split
(map ``0:598``, queries ``600:1000``); falls back to the synthetic demo room. Prints one
markdown table per front-end / PnP back-end: median and 90th-percentile seconds per stage,
plus the median pose error, so the PnP back-ends can be compared on the same matches.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from mast3r_ros.localization.datasets import open_dataset
from mast3r_ros.localization.evaluation import localize_frames, summarize
from mast3r_ros.localization.frontend import QueryFrame, make_frontend
from mast3r_ros.localization.localizer import Localizer, LocalizerConfig
from mast3r_ros.localization.map_store import KeyframeMap
from mast3r_ros.localization.mapbuild import build_map
from mast3r_ros.localization.mast3r_frontend import Mast3rFrontEnd, Mast3rFrontEndConfig
from mast3r_ros.localization.pose import PnPConfig
from mast3r_ros.localization.retrieval import RetrievalConfig
from mast3r_ros.localization.rgbd import RgbdCalibration
from mast3r_ros.model import RELEASED, InferenceConfig, Mast3rModel, random_network
from mast3r_ros.paths import shared_dir

STAGES = ("features", "retrieval", "matching", "pnp", "total")


def _default_dataset() -> tuple[str, str, str]:
    seven = shared_dir() / "data" / "7scenes_redkitchen"
    if seven.exists():
        return str(seven), "0:598", "600:1000"
    from mast3r_ros.data.synthetic_room import default_demo_dataset, load_sequence_info

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


def _best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bench_mast3r(dataset, map_spec: str, query_spec: str, top_k: int, repeat: int) -> None:
    """MASt3R front-end, released configuration with random weights (no released weights here: the
    poses are meaningless, the timings are not). Per-query stages through the Localizer, then the
    per-pair cost with keyframe encodings cached in the map vs. re-encoding both images per pair."""
    model = Mast3rModel(random_network(RELEASED), InferenceConfig())
    frontend = Mast3rFrontEnd(Mast3rFrontEndConfig(), model=model)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "map"
        build_map(dataset, map_spec, frontend, path, progress=True)
        with KeyframeMap.open(path) as kmap:
            config = LocalizerConfig(retrieval=RetrievalConfig(top_k=top_k, prior_max_dist_m=None,
                                                               prior_max_angle_deg=None))
            loc = Localizer(kmap, frontend, config)
            recs = localize_frames(loc, dataset, query_spec, progress=True)
            print(_table(f"MASt3R front-end (released config, random weights), top-k {top_k}",
                         recs, summarize(recs)))
            keyframe = kmap.get_keyframe(kmap.keyframe_ids()[0], arrays=list(frontend.array_names))
        frame = dataset.frames(query_spec)[0]
        image = dataset.load_rgb(frame)
        query = QueryFrame(image=image, K=dataset.K)
        frontend.prepare_query(query)
        t_match = _best_of(lambda: frontend.match(query, keyframe), repeat)
        t_enc = _best_of(lambda: frontend._encode(keyframe.image), repeat)
    cached = t_enc + top_k * t_match                 # query encoded once, k cached keyframes
    reencode = top_k * (2 * t_enc + t_match)         # both images encoded for every pair
    print("### cached keyframe encodings vs re-encoding per pair (best of "
          f"{repeat}, one {image.shape[1]}x{image.shape[0]} query)\n")
    print("| step | seconds |\n|---|---|")
    print(f"| encode one image | {t_enc:.2f} |\n| match one pair (decoders + needed heads + FRM) | {t_match:.2f} |")
    print(f"| per query, top-k {top_k}, cached keyframe encodings | {cached:.2f} |")
    print(f"| per query, top-k {top_k}, re-encoding both images per pair | {reencode:.2f} |")
    print(f"\nsaving: {reencode - cached:.2f} s per query ({reencode / cached:.2f}x)\n")


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
    p.add_argument("--top-k", type=int, default=2, help="keyframes matched per query (MASt3R run)")
    p.add_argument("--repeat", type=int, default=2)
    a = p.parse_args()
    if a.dataset is None:
        root, mspec, qspec = _default_dataset()
    else:
        root, mspec, qspec = a.dataset, a.map_frames, a.query_frames
    dataset = open_dataset(root)
    print(f"dataset {root}: map {a.map_frames or mspec}, queries {a.query_frames or qspec}\n")
    calib = RgbdCalibration.load(a.rgbd_calib) if a.rgbd_calib else None
    if "classical" in a.frontends:
        bench_classical(dataset, a.map_frames or mspec, a.query_frames or qspec, a.pnp, a.max_queries, calib,
                        a.query_depth)
    if "mast3r" in a.frontends:
        few_map, few_query = _few(dataset, a.map_frames or mspec, 3), _few(dataset, a.query_frames or qspec, 2)
        bench_mast3r(dataset, a.mast3r_map_frames or few_map, a.mast3r_query_frames or few_query, a.top_k,
                     a.repeat)


def _few(dataset, spec: str, n: int) -> str:
    """A spec selecting at most ``n`` frames spread evenly over ``spec`` (the released network is slow
    on CPU); assumes the frames of ``spec`` are evenly spaced, as in the datasets used here."""
    idx = [f.index for f in dataset.frames(spec)]
    step = max(1, idx[len(idx) // n] - idx[0]) if len(idx) > n else 1
    return f"{idx[0]}:{idx[0] + (n - 1) * step + 1}:{step}"


if __name__ == "__main__":
    main()
