"""Hostile and careless map folders (issue 18, cases 1, 2, 7): the store never touches a file outside the
map or a file it did not write, reading deletes nothing, and a map has one writer at a time."""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from mast3r_ros.map import Keyframe, KeyframeMap, MapError, MapMeta


def _kf(k: int) -> Keyframe:
    rng = np.random.default_rng(k)
    T = np.eye(4)
    T[:3, 3] = (0.1 * k, 0.0, 1.0)
    return Keyframe(None, k, float(k), rng.integers(0, 256, (24, 32, 3), dtype=np.uint8),
                    np.array([[50.0, 0, 15.5], [0, 50.0, 11.5], [0, 0, 1]]), T,
                    rng.random((24, 32), dtype=np.float32), {"desc": rng.random((5, 8), dtype=np.float32)})


@pytest.fixture
def map_dir(tmp_path: Path) -> Path:
    with KeyframeMap.create(tmp_path / "map", MapMeta("classical", image_size=(32, 24))) as m:
        m.add_keyframes([_kf(0), _kf(1)])
        m.put_global("index", np.arange(3))
    return tmp_path / "map"


def _sql(path: Path, query: str, args=()) -> None:
    con = sqlite3.connect(path / "map.sqlite")
    con.execute(query, args)
    con.commit()
    con.close()


@pytest.mark.parametrize("bad", ["../../../victim.txt", "/tmp/victim.txt", "..", "sub/desc.npy", 7])
def test_file_names_from_the_database_never_leave_the_map(map_dir: Path, tmp_path: Path, bad):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    _sql(map_dir, "UPDATE arrays SET file=? WHERE kf_id=1 AND name='desc'", (bad,))
    _sql(map_dir, "UPDATE globals SET file=? WHERE name='index'", (bad,))
    with pytest.raises(MapError, match="is damaged .*not a map file name"):
        KeyframeMap.open(map_dir)
    with KeyframeMap.open(map_dir, check=False) as m:  # every call checks again
        for call in (lambda: m.put_array(1, "desc", np.zeros(3)), lambda: m.get_array(1, "desc"),
                     lambda: m.put_global("index", np.zeros(2)), lambda: m.get_global("index"), m.verify):
            with pytest.raises(MapError, match="not a map file name|outside"):
                call()
    assert victim.read_text() == "precious"


def test_symlinks_leading_out_of_the_map_are_refused(map_dir: Path, tmp_path: Path):
    outside = tmp_path / "home"
    outside.mkdir()
    (outside / "desc.npy").write_bytes(b"user data")
    kf_dir = map_dir / "keyframes" / "000001"
    for f in kf_dir.glob("desc*.npy"):
        f.unlink()
        f.symlink_to(outside / "desc.npy")
    with pytest.raises(MapError, match="is damaged .*outside"):
        KeyframeMap.open(map_dir)
    with KeyframeMap.open(map_dir, check=False) as m:
        with pytest.raises(MapError, match="outside"):
            m.get_array(1, "desc")
        with pytest.raises(MapError, match="outside"):
            m.put_array(1, "desc", np.zeros(3))
    assert (outside / "desc.npy").read_bytes() == b"user data"


def test_reading_deletes_nothing_and_a_writer_deletes_only_its_own_files(map_dir: Path):
    user = {map_dir / "notes.txt": b"mine", map_dir / "globals" / "notes.txt": b"mine too",
            map_dir / "keyframes" / "000001" / "photo.jpg": b"jpeg", map_dir / "keyframes" / "mine": b"x"}
    orphan = map_dir / "globals" / "orphan.npy"  # the shape of a store file no row references
    for p, data in {**user, orphan: b"half"}.items():
        p.write_bytes(data)
    with KeyframeMap.open(map_dir) as m:
        m.get_keyframe(1, arrays=["desc"])
    assert orphan.exists() and all(p.read_bytes() == d for p, d in user.items())
    with KeyframeMap.open(map_dir) as m:
        m.put_array(2, "desc", np.ones(4))
    assert not orphan.exists() and all(p.read_bytes() == d for p, d in user.items())


def test_overwrite_never_deletes_the_users_files(map_dir: Path, tmp_path: Path):
    stray = tmp_path / "stray"  # a folder with a stray map.yaml among the user's files
    stray.mkdir()
    (stray / "map.yaml").write_text("format_version: 1\nfrontend: classical\n")
    (stray / "thesis.tex").write_text("years of work")
    with pytest.raises(MapError, match="not empty and not a map"):
        KeyframeMap.create(stray, MapMeta("classical"), overwrite=True)
    assert (stray / "thesis.tex").read_text() == "years of work"
    (map_dir / "keyframes" / "000001" / "photo.jpg").write_bytes(b"jpeg")
    with pytest.raises(MapError, match=r"did not write \(keyframes/000001/photo.jpg\)"):
        KeyframeMap.create(map_dir, MapMeta("classical"), overwrite=True)
    with KeyframeMap.open(map_dir) as m:
        assert m.keyframe_ids() == [1, 2]
        m.verify()
    (map_dir / "keyframes" / "000001" / "photo.jpg").unlink()
    with KeyframeMap.create(map_dir, MapMeta("classical"), overwrite=True) as m:
        assert m.keyframe_ids() == []
    assert not list(tmp_path.glob(".map.*"))  # the replaced map is gone, no temp folder left
    with pytest.raises(MapError, match="already exists; use --overwrite"):
        KeyframeMap.create(map_dir, MapMeta("classical"))


def test_a_map_is_never_created_inside_another_map(map_dir: Path):
    with pytest.raises(MapError, match="inside the map folder"):
        KeyframeMap.create(map_dir / "keyframes" / "copy", MapMeta("classical"))
    assert not (map_dir / "keyframes" / "copy").exists()


def test_second_writer_is_refused_at_once_naming_the_holder(map_dir: Path):
    with KeyframeMap.open(map_dir) as first:
        first.add_keyframe(_kf(2))  # now the writer
        with KeyframeMap.open(map_dir) as second:
            assert second.keyframe_ids() == [1, 2, 3]  # reading is fine
            with pytest.raises(MapError, match=f"being written by another writer \\(pid {os.getpid()} "):
                second.add_keyframe(_kf(3))
        with pytest.raises(MapError, match="being written"):
            KeyframeMap.create(map_dir, MapMeta("classical"), overwrite=True)
        first.add_keyframe(_kf(4))
    with KeyframeMap.open(map_dir, writer=True) as m:  # released on close
        assert m.keyframe_ids() == [1, 2, 3, 4]
        m.verify()


def test_cli_map_build_overwrite_is_refused_while_a_writer_holds_the_map(map_dir: Path, data_dir: Path):
    """The second `map build --overwrite` is refused (rc 2, one line naming the holder); the first writer
    finishes intact."""
    with KeyframeMap.open(map_dir, writer=True) as first:
        proc = subprocess.run([sys.executable, "-m", "mast3r_ros.cli", "map", "build", "--dataset",
                               str(data_dir / "7scenes_redkitchen"), "--frames", "0:12:6", "--out",
                               str(map_dir), "--overwrite"], capture_output=True, text=True, timeout=300,
                              env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
        first.add_keyframe(_kf(5))
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip()
    assert "\n" not in err and "Traceback" not in err and f"pid {os.getpid()}" in err, err
    with KeyframeMap.open(map_dir) as m:
        assert m.keyframe_ids() == [1, 2, 3]
        m.verify()


@pytest.mark.parametrize("doc_change, words", [
    ({"image_size": [1, 2, 3]}, "image_size"), ({"extra": [1, 2]}, "'extra' must be a mapping"),
    ({"frontend": ["classical"]}, "must be strings"), ({"image_size": "640x480"}, "image_size"),
])
def test_malformed_map_yaml_is_a_map_error(map_dir: Path, doc_change, words):
    doc = yaml.safe_load((map_dir / "map.yaml").read_text())
    (map_dir / "map.yaml").write_text(yaml.safe_dump({**doc, **doc_change}))
    with pytest.raises(MapError, match=words):
        KeyframeMap.open(map_dir)


def test_damaged_pose_blob_is_a_map_error(map_dir: Path):
    _sql(map_dir, "UPDATE keyframes SET T_map_cam=? WHERE id=2", (b"\0" * 12,))
    with pytest.raises(MapError, match="keyframe 2: T_map_cam is not 16 float64 values"):
        KeyframeMap.open(map_dir)
    with KeyframeMap.open(map_dir, check=False) as m:
        with pytest.raises(MapError, match="keyframe 2 T_map_cam: expected 128 bytes"):
            m.poses()


def test_copy_map_refuses_itself_a_subfolder_and_user_files(map_dir: Path, tmp_path: Path):
    from mast3r_ros.map.folder import copy_map

    with pytest.raises(MapError, match="inside the map folder"):
        copy_map(map_dir, map_dir / "keyframes" / "copy")
    with pytest.raises(MapError, match="already stored"):
        copy_map(map_dir, map_dir)
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "map.yaml").write_text("x")
    (stray / "thesis.tex").write_text("years of work")
    with pytest.raises(MapError, match="not empty and not a map"):
        copy_map(map_dir, stray, overwrite=True)
    assert (stray / "thesis.tex").read_text() == "years of work"
    copy_map(map_dir, tmp_path / "copy")
    copy_map(map_dir, tmp_path / "copy", overwrite=True)
    with KeyframeMap.open(tmp_path / "copy") as m:
        assert m.keyframe_ids() == [1, 2]
        m.verify()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy", "map", "stray"]
