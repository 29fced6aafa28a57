"""Careless and hostile inputs through the CLI (issue 18, cases 5, 6, 8): images, poses, damaged maps and
bad flags give one error line naming the problem and the file or flag (exit code 2), never a traceback,
and damage is reported instead of localized against."""
from __future__ import annotations

import shutil
import sqlite3
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from mast3r_ros.cli import main
from mast3r_ros.datasets.readers import DatasetError, open_dataset
from mast3r_ros.map import KeyframeMap, MapError
from mast3r_ros.model.preprocess import preprocess_file, to_network_tensor

FRAMES = (0, 6, 12, 18, 24)


def _cli(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _one_error_line(rc: int, err: str, *words: str) -> None:
    assert rc == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err and ": error: " in err, err
    for w in words:
        assert w in err, (w, err)


def _copy_frames(src: Path, dst: Path, frames=FRAMES) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copy(src / "camera-intrinsics.txt", dst)
    for i in frames:
        for ext in ("color.jpg", "depth.png", "pose.txt"):
            shutil.copy(src / f"frame-{i:06d}.{ext}", dst)
    return dst


@pytest.fixture(scope="module")
def scene_dir(data_dir) -> Path:
    return open_dataset(data_dir / "7scenes_redkitchen").data_dir


@pytest.fixture(scope="module")
def built_map(scene_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("maps") / "m"
    assert main(["map", "build", "--dataset", str(scene_dir), "--frames", "0:30:6", "--out", str(out)]) == 0
    return out


def _png_bomb(path: Path, w: int = 20000, h: int = 10000) -> Path:
    """A valid all-black 8-bit grey PNG of w x h pixels, compressed to ~200 KB."""
    comp, parts = zlib.compressobj(9), []
    row = b"\0" * (w + 1)
    for _ in range(h):
        parts.append(comp.compress(row))
    parts.append(comp.flush())

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b""))
    return path


def test_huge_png_is_refused_by_pixel_count(tmp_path, capsys, tiny_checkpoint):
    bomb = _png_bomb(tmp_path / "bomb.png")
    assert bomb.stat().st_size < 1_000_000
    with pytest.raises(ValueError, match=r"bomb.png is 200 Mpx, more than the 80 Mpx"):
        preprocess_file(bomb)
    rc, _, err = _cli(capsys, "infer-pair", "--checkpoint", tiny_checkpoint, bomb, bomb, "--out", tmp_path / "o.npz")
    _one_error_line(rc, err, "bomb.png", "200 Mpx")


def test_16bit_png_is_scaled_not_clipped(tmp_path):
    grey16 = (np.arange(48 * 64, dtype=np.uint32).reshape(48, 64) * 21).astype(np.uint16)  # 0 .. 64491
    path = tmp_path / "g16.png"
    cv2.imwrite(str(path), grey16)
    got = preprocess_file(path, 64).tensor
    grey8 = np.round(grey16 * (255 / 65535)).astype(np.uint8)
    expected = to_network_tensor(np.repeat(grey8[..., None], 3, axis=2))
    assert got.shape == expected.shape and bool((got == expected).all())
    assert float(got.min()) == -1.0 and float(got.max()) < 0.98  # a gradient, not all white


@pytest.mark.parametrize("content", [b"", b"not an image", b"\x89PNG\r\n\x1a\n" + b"\0" * 40])
def test_unreadable_images_are_one_line_errors(tmp_path, capsys, tiny_checkpoint, content):
    bad = tmp_path / "bad.png"
    bad.write_bytes(content)
    rc, _, err = _cli(capsys, "infer-pair", "--checkpoint", tiny_checkpoint, bad, bad, "--out", tmp_path / "o.npz")
    _one_error_line(rc, err, "bad.png")


def test_infer_pair_flags_are_checked_first(tmp_path, capsys, tiny_checkpoint, scene_dir):
    img = scene_dir / "frame-000000.color.jpg"
    base = ["infer-pair", "--checkpoint", tiny_checkpoint, img, img]
    rc, _, err = _cli(capsys, *base, "--out", tmp_path)
    _one_error_line(rc, err, "--out", "is a folder")
    rc, _, err = _cli(capsys, *base, "--out", tmp_path / "o.npz", "--device", "bogus")
    _one_error_line(rc, err, "--device 'bogus'")
    rc, _, err = _cli(capsys, *base, "--out", tmp_path / "o.npz", "--size", "15")
    _one_error_line(rc, err, "--size 15", "[16, 4096]")
    assert "too small" not in err
    assert not (tmp_path / "o.npz").exists()


def test_debug_flag_shows_the_stack(tmp_path, tiny_checkpoint, scene_dir):
    img = scene_dir / "frame-000000.color.jpg"
    with pytest.raises(ValueError, match="--device 'bogus'"):
        main(["--debug", "infer-pair", "--checkpoint", str(tiny_checkpoint), str(img), str(img), "--out",
              str(tmp_path / "o.npz"), "--device", "bogus"])


def test_non_rigid_pose_file_is_refused_naming_it(tmp_path, capsys, scene_dir):
    ds = _copy_frames(scene_dir, tmp_path / "ds", (0, 6, 12))
    pose = ds / "frame-000006.pose.txt"
    T = np.loadtxt(pose)
    T[:3, :3] *= 2.0  # det 8
    np.savetxt(pose, T)
    with pytest.raises(DatasetError, match=r"frame-000006.pose.txt has a rotation that is not rigid \(det 8"):
        open_dataset(ds).frames()
    rc, _, err = _cli(capsys, "map", "build", "--dataset", ds, "--frames", "0:13:6", "--out", tmp_path / "m")
    _one_error_line(rc, err, "frame-000006.pose.txt", "not rigid")
    assert not (tmp_path / "m").exists()


def _damage(built_map: Path, tmp_path: Path, how: str) -> Path:
    m = tmp_path / "damaged"
    shutil.copytree(built_map, m)
    con = sqlite3.connect(m / "map.sqlite")
    if how == "deleted files":
        for f in (m / "keyframes").glob("*/image*.png"):
            f.unlink()
    elif how == "corrupt files":
        for f in (m / "keyframes").glob("*/sift_desc*.npy"):
            f.write_bytes(f.read_bytes()[:-1] + b"\x01")
    elif how == "NaN poses":
        con.execute("UPDATE keyframes SET T_map_cam=?", (np.full(16, np.nan).tobytes(),))
    elif how == "NaN descriptors":  # a buggy writer stored NaN keyframe descriptors with a matching sha256
        import hashlib
        import io
        (file,) = con.execute("SELECT file FROM globals WHERE name='retrieval_desc'").fetchone()
        arr = np.load(m / "globals" / file)
        arr[:] = np.nan
        buf = io.BytesIO()
        np.save(buf, arr)
        (m / "globals" / file).write_bytes(buf.getvalue())
        con.execute("UPDATE globals SET sha256=? WHERE name='retrieval_desc'",
                    (hashlib.sha256(buf.getvalue()).hexdigest(),))
    elif how == "missing rows":
        con.execute("DELETE FROM keyframes WHERE id=2")
    con.commit()
    con.close()
    return m


@pytest.mark.parametrize("how, words, on_open", [
    ("deleted files", "image: file", True), ("corrupt files", "is corrupt: sha256", False),
    ("NaN poses", "T_map_cam is not a finite", True), ("NaN descriptors", "NaN/Inf values", False),
    ("missing rows", "belongs to keyframe 2, which has no row", True),
])
def test_damaged_maps_are_reported_not_localized_against(built_map, scene_dir, tmp_path, capsys, how, words,
                                                         on_open):
    m = _damage(built_map, tmp_path, how)
    if on_open:
        with pytest.raises(MapError, match=words):
            KeyframeMap.open(m)
    rc, out, _ = _cli(capsys, "map", "check", m)
    assert rc == 1 and words in out, out
    rc, _, err = _cli(capsys, "localize", "--map", m, "--dataset", scene_dir, "--frames", "3:10:3", "--out",
                      tmp_path / "poses.txt")
    _one_error_line(rc, err, "is damaged", words, "map check")
    assert not (tmp_path / "poses.txt").exists()


def test_map_check_of_an_intact_map(built_map, capsys):
    rc, out, _ = _cli(capsys, "map", "check", built_map)
    assert rc == 0 and "intact (5 keyframes, every file verified)" in out


def test_query_failures_give_their_reason(built_map, scene_dir, tmp_path, capsys):
    ds = _copy_frames(scene_dir, tmp_path / "ds", (3, 9))
    for f in ds.glob("*.depth.png"):
        cv2.imwrite(str(f), np.full((10, 10), 1000, np.uint16))
    (ds / "frame-000015.color.jpg").write_bytes(b"not a jpeg")  # an unreadable query image
    shutil.copy(ds / "frame-000003.pose.txt", ds / "frame-000015.pose.txt")
    rc, out, err = _cli(capsys, "localize", "--map", built_map, "--dataset", ds, "--frames", "0:20",
                        "--out", tmp_path / "poses.txt", "--query-depth")
    assert rc == 0, err
    assert "0/3 frames localized" in out and "depth" in out and "cannot read colour image" in out, out
    assert (tmp_path / "poses.txt").exists()


def test_failed_build_leaves_a_partial_map_reported_as_such(scene_dir, tmp_path, capsys):
    ds = _copy_frames(scene_dir, tmp_path / "ds", (0, 6, 12))
    (ds / "frame-000012.depth.png").unlink()
    m = tmp_path / "m"
    rc, _, err = _cli(capsys, "map", "build", "--dataset", ds, "--frames", "0:13:6", "--out", m)
    _one_error_line(rc, err, "no depth", "partial map", "--overwrite")
    with pytest.raises(MapError, match="partial map: `map build` stopped before finishing"):
        KeyframeMap.open(m)
    rc, out, _ = _cli(capsys, "map", "check", m)
    assert rc == 1 and "partial map" in out
    assert "another front-end" not in out


def test_overwrite_message_names_the_flag(built_map, scene_dir, capsys):
    rc, _, err = _cli(capsys, "map", "build", "--dataset", scene_dir, "--frames", "0:7:6", "--out", built_map)
    _one_error_line(rc, err, "already exists; use --overwrite")


@pytest.mark.parametrize("rel", ["../../victim.mcap", "/etc/passwd", "", 5])
def test_bag_data_files_must_stay_inside_the_bag(tmp_path, capsys, rel):
    bag = tmp_path / "bag"
    bag.mkdir()
    doc = {"rosbag2_bagfile_information": {"version": 8, "storage_identifier": "mcap",
                                           "relative_file_paths": ["bag.mcap", rel],
                                           "files": [{"path": "bag.mcap", "message_count": 0}]}}
    (bag / "metadata.yaml").write_text(yaml.safe_dump(doc))
    for argv in (["play", bag], ["replay", "--bag", bag, "--map", tmp_path, "--out", tmp_path / "out"]):
        rc, _, err = _cli(capsys, *argv)
        _one_error_line(rc, err, "lies outside the bag folder", "metadata.yaml")
    assert not (tmp_path / "out").exists()


def test_a_real_bag_passes_the_bag_check(tmp_path, capsys, scene_dir):
    from mast3r_ros.files.bag_check import check_bag_folder

    ds = _copy_frames(scene_dir, tmp_path / "ds", (0, 6))
    assert main(["make-bag", "--dataset", str(ds), "--frames", "0:7", "--out", str(tmp_path / "bag")]) == 0
    assert check_bag_folder(tmp_path / "bag") == tmp_path / "bag"
