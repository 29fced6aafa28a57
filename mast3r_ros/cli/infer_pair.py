"""`mast3r-ros infer-pair`: run one image pair through the network and save every output (.npz).

A user's debugging tool and the stable entry point for equivalence checks against the official code.
Array names and shapes follow the official outputs: ``img1``/``img2`` [1, 3, H, W] normalised inputs,
``pred1_pts3d``, ``pred1_conf``, ``pred1_desc``, ``pred1_desc_conf``, ``pred2_pts3d_in_other_view``,
``pred2_conf``, ``pred2_desc``, ``pred2_desc_conf`` [1, H, W, ...] at full network resolution.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

NAME = "infer-pair"
HELP = "run the network on one image pair and save all outputs to an .npz"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="MASt3R .pth in the official layout")
    parser.add_argument("img1", help="first image (view 1; its camera frame is the output frame)")
    parser.add_argument("img2", help="second image")
    parser.add_argument("--out", required=True, help="output .npz")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    parser.add_argument("--amp", default=None, choices=["auto", "fp32", "bf16", "fp16"],
                        help="mixed precision: bf16 (CPU or CUDA), fp16 (CUDA), auto (per CPU features / GPU); "
                             "default fp32")
    parser.add_argument("--size", type=int, default=512, help="long side of the network image (default 512)")


def run(args: argparse.Namespace) -> int:
    # Imported here so `mast3r-ros --help` does not pay for torch.
    from mast3r_ros.cli.common import output_file, torch_device
    from mast3r_ros.model import InferenceConfig, Mast3rModel, preprocess_file
    from mast3r_ros.model.preprocess import MAX_LONG_SIDE, PATCH

    # Errors propagate to the CLI front-end, which prints them as one line (exit code 2).
    if not PATCH <= args.size <= MAX_LONG_SIDE:
        raise ValueError(f"--size {args.size}: the long side of the network image must be in "
                         f"[{PATCH}, {MAX_LONG_SIDE}] pixels (default 512)")
    out = output_file(args.out, "--out")
    torch_device(args.device)
    im1 = preprocess_file(args.img1, args.size)
    im2 = preprocess_file(args.img2, args.size)
    model = Mast3rModel.from_checkpoint(args.checkpoint, InferenceConfig(device=args.device, amp_dtype=args.amp))
    start = time.perf_counter()
    pred1, pred2 = model.infer_pair(im1.tensor, im2.tensor)
    elapsed = time.perf_counter() - start
    arrays = {"img1": im1.tensor.numpy(), "img2": im2.tensor.numpy()}
    for key in ("pts3d", "conf", "desc", "desc_conf"):
        arrays[f"pred1_{key}"] = pred1[key].cpu().numpy()
        arrays[f"pred2_{'pts3d_in_other_view' if key == 'pts3d' else key}"] = pred2[key].cpu().numpy()
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, **arrays)
    h1, w1 = im1.true_shape
    h2, w2 = im2.true_shape
    print(f"infer-pair: {w1}x{h1} + {w2}x{h2} in {elapsed:.2f} s on {args.device} -> {out}")
    return 0
