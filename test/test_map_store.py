"""Keyframe map store: round trips, atomic replacement, corruption/version/checkpoint errors and a
real SIGKILL in the middle of adding keyframes."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from mast3r_ros.datasets.readers import open_dataset
from mast3r_ros.datasets.tum import read_tum
from mast3r_ros.files.atomic_io import file_sha256
from mast3r_ros.map import (
    FORMAT_VERSION,
    Keyframe,
    KeyframeMap,
    MapError,
    MapMeta,
)

SHA_A, SHA_B = "a" * 64, "b" * 64


def _pose(k: int) -> np.ndarray:
    T = np.eye(4)
    c, s = np.cos(0.1 * k), np.sin(0.1 * k)
    T[:3, :3] = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
    T[:3, 3] = (0.1 * k, -0.05 * k, 1.0)
    return T


def _kf(k: int, h: int = 24, w: int = 32) -> Keyframe:
    rng = np.random.default_rng(k)
    return Keyframe(id=None, frame_index=10 * k, timestamp=0.5 * k,
                    image=rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
                    K=np.array([[50.0 + k, 0, 15.5], [0, 50.0, 11.5], [0, 0, 1]]), T_map_cam=_pose(k),
                    depth=rng.random((h, w), dtype=np.float32),
                    arrays={"sift_desc": rng.random((7, 128), dtype=np.float32), "ids": np.arange(k + 1)})


@pytest.fixture
def kmap(tmp_path: Path):
    with KeyframeMap.create(tmp_path / "map", MapMeta("classical", SHA_A, (32, 24))) as m:
        yield m


def test_roundtrip_keyframes_and_metadata(kmap: KeyframeMap, tmp_path: Path):
    ids = kmap.add_keyframes([_kf(0), _kf(1)]) + [kmap.add_keyframe(_kf(2))]
    assert ids == [1, 2, 3] and kmap.keyframe_ids() == [1, 2, 3]
    kmap.close()
    with KeyframeMap.open(tmp_path / "map", expect_checkpoint_sha256=SHA_A) as m:
        meta = m.meta
        assert (meta.frontend, meta.checkpoint_sha256, meta.image_size) == ("classical", SHA_A, (32, 24))
        for kid, k in zip(ids, range(3)):
            ref, got = _kf(k), m.get_keyframe(kid, arrays=["sift_desc", "ids"])
            assert (got.id, got.frame_index, got.timestamp) == (kid, ref.frame_index, ref.timestamp)
            np.testing.assert_array_equal(got.image, ref.image)
            np.testing.assert_array_equal(got.depth, ref.depth)
            np.testing.assert_array_equal(got.K, ref.K)
            np.testing.assert_array_equal(got.T_map_cam, ref.T_map_cam)
            for name in ("sift_desc", "ids"):
                np.testing.assert_array_equal(got.arrays[name], ref.arrays[name])
                assert got.arrays[name].dtype == ref.arrays[name].dtype
        lazy = m.get_keyframe(2, load_image=False, load_depth=False)
        assert lazy.image is None and lazy.depth is None and lazy.arrays == {}
        assert m.array_names(2) == ["ids", "sift_desc"]
        assert set(m.poses()) == {1, 2, 3}
        np.testing.assert_array_equal(m.poses()[3], _pose(2))
    doc = yaml.safe_load((tmp_path / "map" / "map.yaml").read_text())
    assert doc["format_version"] == FORMAT_VERSION and doc["units"] == "m" and "created" in doc


def test_update_poses_is_all_or_nothing(kmap: KeyframeMap):
    kmap.add_keyframes([_kf(0), _kf(1)])
    kmap.update_poses({1: _pose(7)})
    np.testing.assert_array_equal(kmap.poses()[1], _pose(7))
    with pytest.raises(MapError, match="no keyframe with id 99"):
        kmap.update_poses({2: _pose(8), 99: _pose(9)})
    np.testing.assert_array_equal(kmap.poses()[2], _pose(1))  # rolled back
    with pytest.raises(MapError, match="finite 4x4"):
        kmap.update_poses({1: np.full((4, 4), np.nan)})


def test_put_array_replaces_atomically_and_globals(kmap: KeyframeMap):
    kid = kmap.add_keyframe(_kf(0))
    folder = kmap.path / "keyframes" / f"{kid:06d}"
    kmap.put_array(kid, "global_desc", np.ones(4, np.float32))
    kmap.put_array(kid, "global_desc", np.full(4, 2.0, np.float32))
    np.testing.assert_array_equal(kmap.get_array(kid, "global_desc"), np.full(4, 2.0))
    assert len(list(folder.glob("global_desc*.npy"))) == 1  # the replaced file was removed
    with pytest.raises(MapError, match="has no array 'nope'"):
        kmap.get_array(kid, "nope")
    with pytest.raises(MapError, match="no keyframe with id 42"):
        kmap.put_array(42, "x", np.ones(1))
    assert kmap.get_global("retrieval") is None
    kmap.put_global("retrieval", np.eye(3))
    kmap.put_global("retrieval", np.eye(2))
    np.testing.assert_array_equal(kmap.get_global("retrieval"), np.eye(2))
    assert len(list((kmap.path / "globals").iterdir())) == 1


def test_write_trajectory_tum(kmap: KeyframeMap):
    kmap.add_keyframes([_kf(2), _kf(0), _kf(1)])  # inserted out of time order
    stamps, T = read_tum(kmap.write_trajectory_tum())
    np.testing.assert_allclose(stamps, [0.0, 0.5, 1.0])
    np.testing.assert_allclose(T, np.stack([_pose(0), _pose(1), _pose(2)]), atol=1e-7)


@pytest.mark.parametrize("mutate, words", [
    (lambda k: k.__setattr__("image", k.image.astype(np.float32)), "image must be"),
    (lambda k: k.__setattr__("image", np.zeros((10, 32, 3), np.uint8)),
     "image is 32x10, map image_size is 32x24"),
    (lambda k: k.__setattr__("K", np.eye(4)), "K must be a finite"),
    (lambda k: k.__setattr__("T_map_cam", np.full((4, 4), np.inf)), "T_map_cam must be a finite"),
    (lambda k: k.__setattr__("depth", np.zeros((3, 3), np.float32)), "depth shape"),
    (lambda k: k.arrays.__setitem__("image", np.ones(2)), "reserved"),
    (lambda k: k.arrays.__setitem__("../evil", np.ones(2)), "invalid array name"),
    (lambda k: k.arrays.__setitem__("obj", np.array([{}], dtype=object)), "object arrays"),
])
def test_bad_keyframes_are_rejected_without_writing(kmap: KeyframeMap, mutate, words):
    kf = _kf(0)
    mutate(kf)
    with pytest.raises(MapError, match=words):
        kmap.add_keyframe(kf)
    assert kmap.keyframe_ids() == []
    assert not [p for p in (kmap.path / "keyframes").iterdir()]


def test_create_refuses_existing(tmp_path: Path):
    KeyframeMap.create(tmp_path / "m", MapMeta("mast3r")).close()
    with pytest.raises(MapError, match="already exists"):
        KeyframeMap.create(tmp_path / "m", MapMeta("mast3r"))
    with KeyframeMap.create(tmp_path / "m", MapMeta("classical"), overwrite=True) as m:
        assert m.meta.frontend == "classical"
    (tmp_path / "notamap").mkdir()
    (tmp_path / "notamap" / "precious.txt").write_text("x")
    with pytest.raises(MapError, match="not empty and not a map"):
        KeyframeMap.create(tmp_path / "notamap", MapMeta("classical"), overwrite=True)
    assert (tmp_path / "notamap" / "precious.txt").exists()


def test_open_errors_name_the_problem(kmap: KeyframeMap, tmp_path: Path):
    kid = kmap.add_keyframe(_kf(0))
    path = kmap.path
    kmap.close()
    with pytest.raises(MapError, match=f"checkpoint sha256 {SHA_A}.*{SHA_B}"):
        KeyframeMap.open(path, expect_checkpoint_sha256=SHA_B)
    doc = yaml.safe_load((path / "map.yaml").read_text())
    (path / "map.yaml").write_text(yaml.safe_dump({**doc, "format_version": 99}))
    with pytest.raises(MapError, match="format version 99"):
        KeyframeMap.open(path)
    (path / "map.yaml").unlink()
    with pytest.raises(MapError, match="missing .*map.yaml"):
        KeyframeMap.open(path)
    (path / "map.yaml").write_text(yaml.safe_dump(doc))
    # corrupt one array file: detected on load and by verify()
    with KeyframeMap.open(path) as m:
        depth_file = next((path / "keyframes" / f"{kid:06d}").glob("depth*.npy"))
        data = bytearray(depth_file.read_bytes())
        data[-1] ^= 0xFF
        depth_file.write_bytes(bytes(data))
        with pytest.raises(MapError, match=f"{depth_file.name} is corrupt: sha256"):
            m.get_keyframe(kid)
        with pytest.raises(MapError, match="is corrupt"):
            m.verify()
        m.get_keyframe(kid, load_depth=False)  # the other files are still fine
    # truncated SQLite file
    db = path / "map.sqlite"
    db.write_bytes(db.read_bytes()[:1000])
    with pytest.raises(MapError, match="map.sqlite"):
        KeyframeMap.open(path)
    with pytest.raises(MapError, match="does not exist"):
        KeyframeMap.open(tmp_path / "missing")


def test_writer_removes_uncommitted_files_reader_does_not(kmap: KeyframeMap):
    kid = kmap.add_keyframe(_kf(0))
    path = kmap.path
    kmap.close()
    (path / "keyframes" / "000009").mkdir()
    (path / "keyframes" / "000009" / "image.png").write_bytes(b"half")
    (path / "keyframes" / f"{kid:06d}" / ".depth.npy.x1y2z3w4.tmp").write_bytes(b"half")
    (path / "globals" / "orphan.npy").write_bytes(b"half")
    with KeyframeMap.open(path) as m:  # reading deletes nothing
        assert m.keyframe_ids() == [kid]
        m.verify()
    assert (path / "keyframes" / "000009" / "image.png").exists() and (path / "globals" / "orphan.npy").exists()
    with KeyframeMap.open(path, writer=True) as m:
        assert m.keyframe_ids() == [kid]
        m.verify()
    assert not (path / "keyframes" / "000009").exists()
    assert not (path / "globals" / "orphan.npy").exists()
    assert sorted(p.name for p in (path / "keyframes" / f"{kid:06d}").iterdir()) == [
        "depth.npy", "ids.npy", "image.png", "sift_desc.npy"]


def test_real_7scenes_keyframe_roundtrip(data_dir: Path, tmp_path: Path):
    ds = open_dataset(data_dir / "7scenes_redkitchen")
    f = ds.frames("42:43")[0]
    kf = Keyframe(None, f.index, f.timestamp, ds.load_rgb(f), ds.K, f.T_world_cam, ds.load_depth(f))
    with KeyframeMap.create(tmp_path / "m", MapMeta("classical", image_size=ds.image_size)) as m:
        kid = m.add_keyframe(kf)
        got = m.get_keyframe(kid)
    np.testing.assert_array_equal(got.image, kf.image)
    np.testing.assert_array_equal(got.depth, kf.depth)
    assert got.frame_index == 42


_WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    from mast3r_ros.map import Keyframe, KeyframeMap

    kmap = KeyframeMap.open(sys.argv[1])
    start = int(sys.argv[2])
    for i in range(start, start + 10000):
        img = np.full((120, 160, 3), i % 251, np.uint8)
        T = np.eye(4)
        T[:3, 3] = i + 1
        kf = Keyframe(None, i, float(i), img, np.eye(3), T,
                      depth=np.full((120, 160), i, np.float32),
                      arrays={"big": np.full(300_000, i, np.float64), "small": np.arange(i % 50 + 1)})
        kid = kmap.add_keyframe(kf)
        print(kid, i, flush=True)
""")


def _run_and_kill(script: Path, map_dir: Path, start: int, n_before: int, when: str) -> dict[int, int]:
    """Start a writer, wait for ``n_before`` committed keyframes, SIGKILL it mid-way; id -> index."""
    proc = subprocess.Popen([sys.executable, str(script), str(map_dir), str(start)],
                            stdout=subprocess.PIPE, text=True)
    done: dict[int, int] = {}
    try:
        while len(done) < n_before:
            line = proc.stdout.readline()
            assert line, "writer exited early"
            kid, idx = map(int, line.split())
            done[kid] = idx
        if when == "in_flight":  # kill as soon as the next keyframe's folder appears
            nxt = map_dir / "keyframes" / f"{max(done) + 1:06d}"
            deadline = time.monotonic() + 10
            while not nxt.exists() and time.monotonic() < deadline:
                time.sleep(0.0005)
        else:
            time.sleep(float(when))
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    return done


def test_sigkill_while_adding_keeps_committed_keyframes(tmp_path: Path):
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    map_dir = tmp_path / "map"
    KeyframeMap.create(map_dir, MapMeta("classical", image_size=(160, 120))).close()
    printed: dict[int, int] = {}
    for start, when in ((0, "in_flight"), (1000, "0.013"), (2000, "0.031")):
        printed.update(_run_and_kill(script, map_dir, start, 4, when))
        with KeyframeMap.open(map_dir, writer=True) as m:  # the next writer collects the killed one's garbage
            ids = m.keyframe_ids()
            assert set(printed) <= set(ids), "a keyframe reported as committed was lost"
            assert ids == list(range(1, len(ids) + 1))
            on_disk = sorted(int(p.name) for p in (map_dir / "keyframes").iterdir())
            assert on_disk == ids, "uncommitted keyframe folders were not cleaned"
            m.verify()
            con = sqlite3.connect(map_dir / "map.sqlite")
            for kid, file, sha in con.execute("SELECT kf_id, file, sha256 FROM arrays"):
                assert file_sha256(map_dir / "keyframes" / f"{kid:06d}" / file) == sha
            con.close()
            for kid in ids:
                kf = m.get_keyframe(kid, arrays=["big", "small"])
                i = kf.frame_index
                assert printed.get(kid, i) == i
                assert kf.depth[0, 0] == i and kf.image[0, 0, 0] == i % 251
                assert np.all(kf.arrays["big"] == i) and len(kf.arrays["small"]) == i % 50 + 1
                np.testing.assert_array_equal(kf.T_map_cam[:3, 3], [i + 1] * 3)
    assert len(printed) >= 12
