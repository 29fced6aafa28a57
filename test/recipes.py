"""The README's marked recipes, as the live tests run them: extracted from README.md, run as a user's
shell would from a checkout (``.venv`` beside the working folder), on an excerpt of a dataset if asked."""
from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

from mast3r_ros.paths import REPO_ROOT
from mast3r_ros.ros.bag.bag_io import read_bag
from mast3r_ros.ros.compat.conversions import stamp_to_ns
from mast3r_ros.ros.compat.conversions_geometry import pose_to_T


def recipe_commands(readme: str, marker: str = "<!-- ros-bag-recipe") -> list[list[str]]:
    """The commands of the first fenced bash block after ``marker`` (continuation lines joined)."""
    start = readme.index(marker)
    block = re.search(r"```bash\n(.*?)```", readme[start:], re.S)
    assert block, f"no ```bash block after the {marker} marker"
    text = block.group(1).replace("\\\n", " ")
    return [shlex.split(line, comments=True) for line in text.splitlines() if line.split("#")[0].strip()]


def readme_recipe(marker: str) -> list[list[str]]:
    """:func:`recipe_commands` of the README in this checkout."""
    return recipe_commands((REPO_ROOT / "README.md").read_text(encoding="utf-8"), marker)


def user_checkout(tmp_path: Path) -> Path:
    """A working folder with ``.venv`` beside it, as the README's relative paths expect."""
    work = tmp_path / "checkout"
    work.mkdir()
    (work / ".venv").symlink_to(REPO_ROOT / ".venv")
    return work


def recipe_client(tmp_path: Path):
    """(checkout folder, its processes' environment, a LiveClient) on a DDS domain of this test's own."""
    from .live_client import LiveClient, ros_env, unique_domain_id

    domain = unique_domain_id()
    return user_checkout(tmp_path), ros_env(domain), LiveClient(domain)


def dataset_excerpt(src: Path, dst: Path, frames) -> Path:
    """A 7-Scenes folder ``dst`` holding only ``frames`` of ``src`` (links to the same files): the
    stand-in registers every frame of its dataset, a few keep a test short."""
    dst.mkdir()
    (dst / "camera-intrinsics.txt").symlink_to(src / "camera-intrinsics.txt")
    for i in frames:
        for part in ("color.jpg", "depth.png", "pose.txt"):
            (dst / f"frame-{i:06d}.{part}").symlink_to(src / f"frame-{i:06d}.{part}")
    return dst


def run_step(cmd: list[str], work: Path, env: dict, log: Path, timeout: float = 180.0) -> None:
    """Run one recipe command to completion; a failure shows the end of its output."""
    rc = subprocess.run(cmd, cwd=work, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                        timeout=timeout).returncode
    assert rc == 0, f"{' '.join(cmd)}: rc {rc}\n" + log.read_text()[-2000:]


def start_step(cmd: list[str], work: Path, env: dict, log: Path) -> subprocess.Popen:
    """Start a recipe command that runs on (``mast3r-ros launch``: its own terminal)."""
    return subprocess.Popen(cmd, cwd=work, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def run_recipe(cmds: list[list[str]], work: Path, env: dict, logs: Path, client, started: list,
               keys=("status", "pose")) -> None:
    """Run the commands in order (logs: ``logs/<command>.log``); a ``launch`` is started, appended to
    ``started`` (the caller stops it) and waited for: ``client`` matched on ``keys``, as the user's rviz /
    ``ros2 topic echo`` is connected before the bag plays (a status sent before the reader matched the
    node's writer never arrives)."""
    for cmd in cmds:
        log = logs / f"{cmd[1]}.log"
        if cmd[1] == "launch":
            started.append(start_step(cmd, work, env, log))
            assert client.wait_matched(keys, 120.0), log.read_text()[-3000:]
            continue
        run_step(cmd, work, env, log)


def bag_truth(bag: Path) -> tuple[list[int], dict]:
    """(image stamps ns, {stamp ns: ground-truth T_map_cam [4,4]}) of a ``make-bag`` bag."""
    images = [stamp_to_ns(m.header.stamp) for _, _, m in read_bag(bag, ["/camera/image_raw"])]
    gt = {stamp_to_ns(m.header.stamp): pose_to_T(m.pose) for _, _, m in read_bag(bag, ["/ground_truth/pose"])}
    return images, gt


def played_bag(cmds: list[list[str]], work: Path) -> Path:
    """The bag the recipe's (first) ``play`` command plays."""
    return work / next(c for c in cmds if c[1] == "play")[2]
