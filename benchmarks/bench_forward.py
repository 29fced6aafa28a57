#!/usr/bin/env python3
"""Forward-pass benchmark: released MASt3R configuration, random weights, one image pair.

Prints a markdown table: wall time, peak memory (process RSS, weights included, as the official
figure), FLOPs and achieved GFLOP/s, next to this machine's matmul throughput measured in the same run
and the official implementation's reference figures for this 2-core machine.

    .venv/bin/python benchmarks/bench_forward.py [--runs 3] [--threads 2] [--size 512x384]
"""
from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from mast3r_ros.model import RELEASED, InferenceConfig, Mast3rModel, Mast3rNet, random_network

OFFICIAL_SECONDS = 11.0  # official implementation, fp32, this 2-core machine (issue #2)
OFFICIAL_PEAK_GIB = 3.66
TARGET_SECONDS = 6.5


def random_released_net(seed: int = 0) -> Mast3rNet:
    """Released structure with random weights (no released weights can be downloaded here)."""
    return random_network(RELEASED, seed)


def matmul_gflops(n: int = 2048, reps: int = 5) -> float:
    """Best-of-reps float32 GEMM throughput: the compute bound for this run."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(reps))
    return 2 * n**3 / best / 1e9


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


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", default="512x384", help="WxH of both images")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", default=None, choices=["fp16", "bf16"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    w, h = (int(v) for v in args.size.split("x"))

    model = Mast3rModel(random_released_net(), InferenceConfig(device=args.device, amp_dtype=args.amp))
    weights_gib = peak_rss_gib()
    g = torch.Generator().manual_seed(1)
    img1 = torch.rand(1, 3, h, w, generator=g) * 2 - 1
    img2 = torch.rand(1, 3, h, w, generator=g) * 2 - 1
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)

    model.infer_pair(img1, img2)  # warm-up: oneDNN primitive creation, allocator growth
    times = []
    for _ in range(args.runs):
        sync()
        times.append(_timed(lambda: (model.infer_pair(img1, img2), sync())))
    best, median = min(times), statistics.median(times)
    peak = peak_rss_gib()  # before the FLOP count, whose bookkeeping would inflate it
    flops = count_flops(lambda: model.infer_pair(img1, img2))
    bound = matmul_gflops()

    print(f"\n## MASt3R forward, released config (random weights), one {w}x{h} pair, "
          f"{args.device}, {args.amp or 'fp32'}, {args.threads} threads\n")
    print("| implementation | wall time (s) | peak RSS (GiB) | GFLOP | GFLOP/s | % of matmul GFLOP/s |")
    print("|---|---|---|---|---|---|")
    print(f"| official (reference figure, same machine) | {OFFICIAL_SECONDS:.2f} | {OFFICIAL_PEAK_GIB:.2f} | "
          f"{flops / 1e9:.0f} | {flops / 1e9 / OFFICIAL_SECONDS:.0f} | "
          f"{100 * flops / 1e9 / OFFICIAL_SECONDS / bound:.0f} |")
    print(f"| mast3r_ros best of {args.runs} (median {median:.2f}) | {best:.2f} | {peak:.2f} | {flops / 1e9:.0f} | "
          f"{flops / 1e9 / best:.0f} | {100 * flops / 1e9 / best / bound:.0f} |")
    print(f"| matmul bound (2048^3 GEMM, this run: {bound:.0f} GFLOP/s) | {flops / 1e9 / bound:.2f} | | | "
          f"{bound:.0f} | 100 |")
    print(f"\nweights alone: {weights_gib:.2f} GiB RSS; target <= {TARGET_SECONDS} s: "
          f"{'met' if best <= TARGET_SECONDS else 'NOT met'} ({OFFICIAL_SECONDS / best:.2f}x the official)")
    need = flops / 1e9 / TARGET_SECONDS
    verdict = ("so no fp32 implementation of these FLOPs can reach it here" if need > bound
               else "so it is reachable in principle")
    print(f"the target needs {need:.0f} GFLOP/s sustained over every op; this machine's fp32 GEMM peak in "
          f"this run is {bound:.0f} GFLOP/s, {verdict}")


if __name__ == "__main__":
    main()
