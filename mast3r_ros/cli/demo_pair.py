"""`mast3r-ros demo-pair`: a short pair-inference demo on the tiny fixture checkpoint.

Rebuilds the tiny checkpoint from ``../shared/fixtures`` (cached in ``.cache/``) and runs two
7-Scenes frames from ``../shared/data`` through the network, printing what came out.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time

NAME = "demo-pair"
HELP = "pair-inference demo with the tiny fixture checkpoint on two frames from ../shared"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", default=None, help="checkpoint (default: rebuilt tiny fixture)")


def run(args: argparse.Namespace) -> int:
    from mast3r_ros.model import Mast3rModel, preprocess_file
    from mast3r_ros.paths import cache_dir, shared_dir

    ckpt = args.checkpoint
    if ckpt is None:
        ckpt = cache_dir() / "mast3r_tiny.pth"
        if not ckpt.exists():
            script = shared_dir() / "fixtures" / "make_tiny_checkpoint.py"
            if not script.exists():
                print(f"demo-pair: error: {script} not found (shared/ must sit beside the checkout)", file=sys.stderr)
                return 2
            subprocess.run([sys.executable, str(script), str(ckpt)], check=True)
    frames = [shared_dir() / "data/7scenes_redkitchen/data" / f"frame-{i:06d}.color.jpg" for i in (0, 30)]
    model = Mast3rModel.from_checkpoint(ckpt)
    im1, im2 = (preprocess_file(f) for f in frames)
    start = time.perf_counter()
    pred1, pred2 = model.infer_pair(im1.tensor, im2.tensor)
    print(f"pair {frames[0].name} + {frames[1].name}: {time.perf_counter() - start:.2f} s")
    for name, pred in (("view1", pred1), ("view2", pred2)):
        for key, value in pred.items():
            print(f"  {name} {key:9s} {tuple(value.shape)} mean {float(value.float().mean()):+.4f}")
    return 0
