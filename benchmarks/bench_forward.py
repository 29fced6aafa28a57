#!/usr/bin/env python3
"""Forward-pass benchmark: fp32 vs bf16 autocast, released MASt3R configuration (random weights), one pair.

Everything is measured in this run: the GEMM peak per dtype (2048^3 matmul), the pair forward in fp32,
in bf16 autocast and in bf16 autocast on a bf16 copy of the weights (``InferenceConfig.bf16_weights``)
(repetitions interleaved, so a load change on a shared machine hits all alike; wall and
process CPU time, min and median), the achieved fraction of the GEMM peak of the same dtype, and how far
the bf16 outputs (and the fast reciprocal matches of their descriptors) are from fp32. With
``--tiny-checkpoint`` the same differences are printed for the fixture checkpoint's three pairs.

    .venv/bin/python benchmarks/bench_forward.py [--runs 3] [--threads 2] [--size 512x384]
        [--tiny-checkpoint .cache/mast3r_tiny.pth --tiny-io ../shared/fixtures/mast3r_tiny_io.npz]
"""
from __future__ import annotations

# first, so that its OMP_WAIT_POLICY default (mast3r_ros/__init__.py) is in place before torch loads
# libgomp, as in the `mast3r-ros` command and the nodes
import mast3r_ros  # noqa: F401

# isort: split

import argparse
import platform
import resource
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from mast3r_ros.matching import fast_reciprocal_nn
from mast3r_ros.model import RELEASED, InferenceConfig, Mast3rModel, random_network
from mast3r_ros.model.precision import cpu_flags, output_differences, resolve_amp
from mast3r_ros.paths import cache_dir, shared_dir

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
# the timed variants: name -> (inference config, dtype of its matmuls)
VARIANTS = {"fp32": (InferenceConfig(), "fp32"),
            "bf16": (InferenceConfig(amp_dtype="bf16"), "bf16"),
            "bf16, bf16 weights": (InferenceConfig(amp_dtype="bf16", bf16_weights=True), "bf16")}


def cpu_description() -> str:
    """CPU model, its bf16-relevant features and torch's thread count (printed by every benchmark)."""
    flags = cpu_flags()
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    feats = ", ".join(f"{f} {'yes' if f in flags else 'no'}" for f in ("amx_bf16", "avx512_bf16", "avx512f"))
    return f"CPU: {model} ({feats}); torch {torch.__version__}, {torch.get_num_threads()} threads"


def gemm_gflops(dtype: torch.dtype, n: int = 2048, reps: int = 5) -> float:
    """Best-of-reps n^3 GEMM throughput in ``dtype``: this run's compute peak for that dtype."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b
    return 2 * n**3 / min(_timed(lambda: a @ b)[0] for _ in range(reps)) / 1e9


def _cpu_flash_attention_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of CPU flash attention (torch's counter has no formula for this op): QK^T and AV.
    The counter passes shapes (torch.Size) in place of tensors."""
    b, h, n_q, d = getattr(query, "shape", query)
    n_k = getattr(key, "shape", key)[-2]
    return 2 * (2 * b * h * n_q * n_k * d)


def count_flops(fn) -> int:
    """Total FLOPs of fn(): matmuls, convolutions and attention (all ops with a FLOP formula)."""
    extra = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_flash_attention_flops}
    with FlopCounterMode(display=False, custom_mapping=extra) as counter:
        fn()
    return counter.get_total_flops()


def _timed(fn) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of fn()."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def match_agreement(ref, other) -> tuple[int, int, float]:
    """FRM (subsample 8) on view-1/view-2 descriptors of both runs: (#ref, #other, Jaccard of the match sets)."""
    def matches(preds):
        xy1, xy2 = fast_reciprocal_nn(preds[0]["desc"][0], preds[1]["desc"][0], subsample=8)
        return {tuple(row) for row in np.concatenate([xy1, xy2], 1).tolist()}
    a, b = matches(ref), matches(other)
    return len(a), len(b), len(a & b) / max(1, len(a | b))


def difference_rows(name: str, ref, other) -> list[str]:
    rows = []
    for view in (0, 1):
        d = output_differences(ref[view], other[view])
        rows.append(f"| {name} view {view + 1} | {100 * d['pts3d_rel_median']:.3f} | {100 * d['pts3d_rel_p99']:.3f} "
                    f"| {100 * d['conf_rel_median']:.3f} | {100 * d['desc_conf_rel_median']:.3f} "
                    f"| {d['desc_cos_median']:.6f} | {d['desc_cos_min']:.4f} |")
    n_ref, n_amp, jac = match_agreement(ref, other)
    rows.append(f"| {name} FRM matches fp32 / bf16: {n_ref} / {n_amp}, Jaccard {jac:.3f} | | | | | | |")
    return rows


def print_differences(rows: list[str]) -> None:
    print("\n### bf16 outputs vs fp32 (same weights, same inputs)\n")
    print("| case | pts3d rel. median (%) | pts3d rel. p99 (%) | conf rel. median (%) | desc_conf rel. median (%) "
          "| desc cosine median | desc cosine min |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))


def tiny_rows(checkpoint: Path, io_path: Path) -> list[str]:
    fp32 = Mast3rModel.from_checkpoint(checkpoint)
    bf16 = Mast3rModel(fp32.net, InferenceConfig(amp_dtype="bf16"))
    io = np.load(io_path, allow_pickle=False)
    rows = []
    for pair in ("pair0", "pair1", "pair2"):
        a, b = torch.from_numpy(io[f"{pair}_img1"]), torch.from_numpy(io[f"{pair}_img2"])
        rows += difference_rows(f"fixture {pair}", fp32.infer_pair(a, b), bf16.infer_pair(a, b))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="timed repetitions per dtype (interleaved)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", default="512x384", help="WxH of both images")
    parser.add_argument("--tiny-checkpoint", type=Path, default=cache_dir() / "mast3r_tiny.pth")
    parser.add_argument("--tiny-io", type=Path, default=shared_dir() / "fixtures" / "mast3r_tiny_io.npz")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    w, h = (int(v) for v in args.size.split("x"))
    print(cpu_description())

    net = random_network(RELEASED)
    models = {name: Mast3rModel(net, config) for name, (config, _) in VARIANTS.items()}
    g = torch.Generator().manual_seed(1)
    img1 = torch.rand(1, 3, h, w, generator=g) * 2 - 1
    img2 = torch.rand(1, 3, h, w, generator=g) * 2 - 1

    outputs = {name: m.infer_pair(img1, img2) for name, m in models.items()}  # warm-up, and the outputs
    gemm = {name: [] for name in VARIANTS}
    wall = {name: [] for name in VARIANTS}
    cpu = {name: [] for name in VARIANTS}
    for _ in range(args.runs):           # interleaved: fp32, bf16, bf16 weights, fp32, ...
        for name, model in models.items():
            gemm[name].append(gemm_gflops(DTYPES[VARIANTS[name][1]], reps=3))
            t_wall, t_cpu = _timed(lambda model=model: model.infer_pair(img1, img2))
            wall[name].append(t_wall)
            cpu[name].append(t_cpu)
    peak = peak_rss_gib()
    flops = count_flops(lambda: models["fp32"].infer_pair(img1, img2))

    print(f"\n## MASt3R pair forward, released config (random weights), {w}x{h}, cpu, {args.threads} threads, "
          f"{args.runs} interleaved runs per variant\n")
    print("| variant | weights (GiB) | wall min (s) | wall median (s) | CPU time min (s) | CPU time median (s) "
          "| GEMM peak this run (GFLOP/s, best) | achieved GFLOP/s (wall min) | % of this dtype's GEMM peak |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, model in models.items():
        peak_gf = max(gemm[name])
        achieved = flops / 1e9 / min(wall[name])
        weights = sum(p.nbytes for p in model.net.parameters()) / 2**30
        print(f"| {name} | {weights:.2f} | {min(wall[name]):.2f} | {statistics.median(wall[name]):.2f} "
              f"| {min(cpu[name]):.2f} | {statistics.median(cpu[name]):.2f} | {peak_gf:.0f} | {achieved:.0f} "
              f"| {100 * achieved / peak_gf:.0f} |")
    print(f"\n{flops / 1e9:.0f} GFLOP per pair; peak RSS {peak:.2f} GiB (fp32 and bf16 share the float32 weights; "
          "the bf16-weights variant holds its own copy).")
    for name, base in (("bf16", "fp32"), ("bf16, bf16 weights", "fp32"), ("bf16, bf16 weights", "bf16")):
        ratio_wall = statistics.median(wall[name]) / statistics.median(wall[base])
        ratio_cpu = statistics.median(cpu[name]) / statistics.median(cpu[base])
        print(f"{name} / {base} median: wall {ratio_wall:.2f}x, CPU time {ratio_cpu:.2f}x -> "
              f"{name if ratio_cpu < 1 else base} measured faster.")
    same = all(torch.equal(outputs["bf16, bf16 weights"][v][k], outputs["bf16"][v][k])
               for v in (0, 1) for k in outputs["bf16"][v])
    print(f"GEMM bf16 / fp32 peak {max(gemm['bf16']) / max(gemm['fp32']):.2f}x. "
          f"amp_dtype='auto' picks {resolve_amp('auto', 'cpu')} on this CPU. "
          f"bf16-weights outputs {'identical to' if same else 'DIFFERENT from'} bf16 autocast's.")

    rows = difference_rows(f"released config {w}x{h}, random weights", outputs["fp32"], outputs["bf16"])
    if args.tiny_checkpoint.exists() and args.tiny_io.exists():
        rows += tiny_rows(args.tiny_checkpoint, args.tiny_io)
    else:
        print(f"\n(no fixture comparison: {args.tiny_checkpoint} or {args.tiny_io} missing; the tests build the "
              "tiny checkpoint)")
    print_differences(rows)


if __name__ == "__main__":
    main()
