"""MASt3R front-end: coarse-to-fine (full-resolution matches from crops, paper section 3.4) against plain
downscaling to the 512-px network image, in the same run, on the same map and queries.

Usage::

    python -m benchmarks.bench_coarse_to_fine [--dataset DIR --map-frames S --query-frames S --top-k K]

Default: 7-Scenes redkitchen (640x480, larger than the 512x384 network image), a map of every 30th
frame before 598 with depth (stored at full resolution, as coarse-to-fine needs), RGB queries
600:1000:50. Model: the oracle stand-in (``mast3r_ros.model.oracle``) at its default noise; the
released weights are not available here, so these are the pipeline's numbers under the stand-in's
injected errors, not the released network's. Queries are localized independently (a fresh localizer
per query: no tracking prior). Prints one row per query and mode and a summary table (median matches,
inliers, translation / rotation error, seconds per query).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mast3r_ros.datasets.readers import open_dataset
from mast3r_ros.localization.evaluation import localize_frames
from mast3r_ros.localization.frontends.mast3r import Mast3rFrontEnd, Mast3rFrontEndConfig
from mast3r_ros.localization.localizer import Localizer, LocalizerConfig
from mast3r_ros.localization.retrieval import RetrievalConfig
from mast3r_ros.map import KeyframeMap
from mast3r_ros.map.build import build_map
from mast3r_ros.model.oracle import OracleModel

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "7scenes_redkitchen"


def _cpu() -> str:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    name = next((ln.split(":", 1)[1].strip() for ln in flags.splitlines() if ln.startswith("model name")), "?")
    return f"{name}; AMX: {'amx_bf16' in flags}; torch threads: {torch.get_num_threads()}; cores: {os.cpu_count()}"


def run(dataset_dir: Path, map_frames: str, query_frames: str, top_k: int) -> list[dict]:
    ds = open_dataset(dataset_dir)
    frames = sorted({f.index for s in (map_frames, query_frames) for f in ds.frames(s)})
    model = OracleModel.from_dataset(ds, frames=frames)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        build_map(ds, map_frames, Mast3rFrontEnd(Mast3rFrontEndConfig(), model=model), Path(tmp) / "m",
                  store_depth=True)
        fes = {mode: Mast3rFrontEnd(Mast3rFrontEndConfig(coarse_to_fine=(mode == "coarse-to-fine")), model=model)
               for mode in ("downscaled", "coarse-to-fine")}
        with KeyframeMap.open(Path(tmp) / "m") as kmap:
            for q in ds.frames(query_frames):
                for mode, fe in fes.items():          # interleaved: both modes see the same machine load
                    loc = Localizer(kmap, fe, LocalizerConfig(retrieval=RetrievalConfig(top_k=top_k)))
                    t0 = time.perf_counter()
                    (r,) = localize_frames(loc, ds, f"{q.index}:{q.index + 1}")
                    rows.append({"mode": mode, "query": q.index, "s": time.perf_counter() - t0,
                                 "localized": r.localized, "matches": r.n_matches, "inliers": r.n_inliers,
                                 "t_cm": 100 * r.translation_error_m if r.localized else float("nan"),
                                 "r_deg": r.rotation_error_deg if r.localized else float("nan")})
                    print(f"{mode:15s} query {q.index:4d}: {rows[-1]['localized']!s:5s} matches {r.n_matches:6d} "
                          f"inliers {r.n_inliers:6d} t {rows[-1]['t_cm']:.2f} cm r {rows[-1]['r_deg']:.3f} deg "
                          f"{rows[-1]['s']:.2f} s", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", type=Path, default=DATA)
    ap.add_argument("--map-frames", default="0:598:30")
    ap.add_argument("--query-frames", default="600:1000:50")
    ap.add_argument("--top-k", type=int, default=1)
    args = ap.parse_args()
    print(f"CPU: {_cpu()}; model: oracle (default noise), not the released weights")
    rows = run(args.dataset, args.map_frames, args.query_frames, args.top_k)
    print("\n| mode | localized | median matches | median inliers | median t (cm) | median r (deg) | "
          "max t (cm) | median s/query |\n|---|---|---|---|---|---|---|---|")
    for mode in ("downscaled", "coarse-to-fine"):
        rs = [r for r in rows if r["mode"] == mode]
        med = lambda k: float(np.nanmedian([r[k] for r in rs]))  # noqa: E731
        print(f"| {mode} | {sum(r['localized'] for r in rs)}/{len(rs)} | {med('matches'):.0f} | {med('inliers'):.0f} | "
              f"{med('t_cm'):.2f} | {med('r_deg'):.3f} | {np.nanmax([r['t_cm'] for r in rs]):.2f} | {med('s'):.2f} |")


if __name__ == "__main__":
    main()
