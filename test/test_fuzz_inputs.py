"""Fuzzing the file inputs (issue 18): checkpoint files, constructor strings, images, map folders and dataset
folders, generated here from seeded random mutations of valid inputs. Every case must end in a correct result
or in the module's own error with a one-line message (never another exception type, a traceback or a hang),
touch no file outside its folder, and stay within bounded memory and time. All five run in ~20 s alone."""
from __future__ import annotations

import argparse
import hashlib
import io
import os
import resource
import sqlite3
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import yaml

from mast3r_ros.datasets.readers import DatasetError, open_dataset
from mast3r_ros.map import Keyframe, KeyframeMap, MapError, MapMeta
from mast3r_ros.map.check import check_map
from mast3r_ros.model import CheckpointError, ConfigError, Mast3rConfig, Mast3rNet
from mast3r_ros.model.checkpoint import WEIGHT_DTYPES, read_checkpoint
from mast3r_ros.model.config import MAX_PARAMETERS, config_from_constructor
from mast3r_ros.model.preprocess import preprocess_file

TINY = dict(enc_embed_dim=32, enc_depth=1, enc_num_heads=2, dec_embed_dim=32, dec_depth=10, dec_num_heads=2)
TINY_STRING = ("AsymmetricMASt3R(pos_embed='RoPE100', img_size=(512, 512), head_type='catmlp+dpt', "
               "output_mode='pts3d+desc24', depth_mode=('exp', -inf, inf), conf_mode=('exp', 1, inf), "
               "enc_embed_dim=32, enc_depth=1, enc_num_heads=2, dec_embed_dim=32, dec_depth=10, dec_num_heads=2, "
               "two_confs=True, desc_conf_mode=('exp', 0, inf))")
CASE_SECONDS = 20  # one case's wall-time bound (each takes < 0.5 s alone; a hang or runaway build would not)
MAX_RSS_GROWTH_KB = 600_000  # peak RSS growth of one family (a zip bomb / huge build would exceed it)


class Budget:
    """Per-case time and per-family peak-memory bounds."""

    def __init__(self):
        self.rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self.outcomes = {"ok": 0, "refused": 0}

    def run(self, fn, allowed: tuple, label: str):
        t0 = time.perf_counter()
        try:
            result = fn()
            self.outcomes["ok"] += 1
        except allowed as exc:
            assert "\n" not in str(exc) and str(exc), f"{label}: not one line: {exc!r}"
            self.outcomes["refused"] += 1
            result = exc
        assert time.perf_counter() - t0 < CASE_SECONDS, f"{label}: took {time.perf_counter() - t0:.1f} s"
        return result

    def check_memory(self):
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - self.rss0
        assert grown < MAX_RSS_GROWTH_KB, f"peak RSS grew by {grown / 1e3:.0f} MB"


def _mutate_bytes(rng, data: bytes) -> bytes:
    kind = rng.integers(5)
    b = bytearray(data)
    if kind == 0:  # truncate
        return bytes(b[: rng.integers(0, len(b))])
    if kind == 1:  # flip bytes
        for i in rng.integers(0, len(b), rng.integers(1, 20)):
            b[i] ^= int(rng.integers(1, 256))
        return bytes(b)
    if kind == 2:  # overwrite a run with random bytes
        at = int(rng.integers(0, len(b)))
        n = int(rng.integers(1, 64))
        b[at:at + n] = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        return bytes(b)
    if kind == 3:  # random garbage
        return rng.integers(0, 256, int(rng.integers(0, 4096)), dtype=np.uint8).tobytes()
    return bytes(b) + rng.integers(0, 256, int(rng.integers(1, 256)), dtype=np.uint8).tobytes()  # trailing junk


def test_fuzz_checkpoint_files(tmp_path):
    """read_checkpoint on mutations of a small official-layout file (40 tensors with real key names; the
    full tiny network is 170 MB, too slow to fuzz): valid state dict or one-line CheckpointError."""
    net_state = Mast3rNet(Mast3rConfig(**TINY)).state_dict()
    g = torch.Generator().manual_seed(0)
    state = {k: torch.randn(min(v.numel(), 64), generator=g) for k, v in list(net_state.items())[:40]}
    buf = io.BytesIO()
    torch.save({"model": state, "args": argparse.Namespace(model=TINY_STRING)}, buf)
    good = buf.getvalue()
    rng = np.random.default_rng(18)
    budget = Budget()
    for case in range(60):
        path = tmp_path / f"c{case}.pth"
        path.write_bytes(_mutate_bytes(rng, good))
        out = budget.run(lambda: read_checkpoint(path), (CheckpointError,), f"checkpoint case {case}")
        if not isinstance(out, Exception):  # a mutation that kept a valid file: every weight is usable
            got, constructor = out
            assert constructor is None or isinstance(constructor, str)
            assert all(t.dtype in WEIGHT_DTYPES and bool(torch.isfinite(t).all()) for t in got.values())
    budget.check_memory()
    assert budget.outcomes["refused"] >= 30, budget.outcomes


_VALUES = ["0", "-1", "1", "2", "16", "24", "1000000", "10**9", "16.0", "1e999", "-inf", "inf", "nan", "'16'", "''",
           "None", "True", "()", "('exp',)", "('exp', 1, inf)", "('', 0, 0)", "[512, 512]", "(512, 0.5)",
           "((((1,),),),)", "'pts3d+desc24'", "'RoPE100'", "'RoPE1e9'", "'ManyAR_PatchEmbed'", "'catmlp+dpt'",
           "x", "f()", "[1] * 9", "'" + "a" * 20_000 + "'", "(" * 250 + "1" + ")" * 250]
_KEYS = ["enc_embed_dim", "enc_depth", "enc_num_heads", "dec_embed_dim", "dec_depth", "dec_num_heads", "patch_size",
         "img_size", "mlp_ratio", "depth_mode", "conf_mode", "desc_conf_mode", "desc_mode", "two_confs",
         "norm_im2_in_dec", "output_mode", "pos_embed", "patch_embed_cls", "head_type", "landscape_only", "bogus"]


def test_fuzz_constructor_strings():
    rng = np.random.default_rng(7)
    budget = Budget()
    for case in range(400):
        if case % 4 == 3:  # syntax-level damage of the valid string
            cut = int(rng.integers(0, len(TINY_STRING)))
            text = TINY_STRING[:cut] + str(rng.choice(["", ")", "(", ",", "=", "'", "**", ";import os", "\0"])) \
                + TINY_STRING[cut + int(rng.integers(0, 5)):]
        else:
            kws = [f"{rng.choice(_KEYS)}={rng.choice(_VALUES)}" for _ in range(int(rng.integers(1, 4)))]
            text = TINY_STRING[:-1] + ", " + ", ".join(kws) + ")"
        cfg = budget.run(lambda: config_from_constructor(text), (ConfigError,), f"constructor {text[:80]!r}")
        if not isinstance(cfg, Exception):  # accepted: a network of bounded size
            e, d, r = cfg.enc_embed_dim, cfg.dec_embed_dim, cfg.mlp_ratio
            assert cfg.enc_depth * (4 + 2 * r) * e * e + 2 * cfg.dec_depth * (8 + 2 * r) * d * d <= MAX_PARAMETERS
    budget.check_memory()
    assert budget.outcomes["ok"] >= 10 and budget.outcomes["refused"] >= 200, budget.outcomes  # 15 / 385


def _image_cases(rng, tmp_path: Path):
    grad = np.linspace(0, 255, 40 * 56).reshape(40, 56).astype(np.uint8)
    encoded = {ext: cv2.imencode(ext, np.dstack([grad, grad[::-1], grad]))[1].tobytes() for ext in (".png", ".jpg")}
    cases = {
        "grey16.png": cv2.imencode(".png", grad.astype(np.uint16) * 257)[1].tobytes(),
        "rgba.png": cv2.imencode(".png", np.dstack([grad] * 4))[1].tobytes(),
        "tiny.png": cv2.imencode(".png", grad[:3, :3])[1].tobytes(),
        "wide.png": cv2.imencode(".png", np.zeros((2, 3000), np.uint8))[1].tobytes(),
        "empty.png": b"",
    }
    for i in range(30):
        ext = ".png" if i % 2 else ".jpg"
        cases[f"m{i}{ext}"] = _mutate_bytes(rng, encoded[ext])
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        yield tmp_path / name


def test_fuzz_images(tmp_path):
    rng = np.random.default_rng(3)
    budget = Budget()
    for path in _image_cases(rng, tmp_path):
        out = budget.run(lambda: preprocess_file(path, 64), (ValueError,), f"image {path.name}")
        if not isinstance(out, Exception):
            t = out.tensor
            assert t.dtype == torch.float32 and float(t.min()) >= -1 and float(t.max()) <= 1
            assert min(t.shape[-2:]) >= 16
    budget.check_memory()
    assert budget.outcomes["ok"] >= 5 and budget.outcomes["refused"] >= 5, budget.outcomes


def _small_map(path: Path) -> Path:
    rng = np.random.default_rng(0)
    with KeyframeMap.create(path, MapMeta("classical", image_size=(16, 12))) as m:
        for k in range(3):
            T = np.eye(4)
            T[:3, 3] = k
            m.add_keyframe(Keyframe(None, k, float(k), rng.integers(0, 256, (12, 16, 3), dtype=np.uint8),
                                    np.array([[20.0, 0, 7.5], [0, 20.0, 5.5], [0, 0, 1]]), T,
                                    rng.random((12, 16), dtype=np.float32),
                                    {"sift_desc": rng.random((4, 8), dtype=np.float32)}))
        m.put_global("retrieval_desc", rng.random((3, 8), dtype=np.float32))
    return path


_HOSTILE_FILES = ["../../../victim.txt", "/etc/passwd", "..", ".", "", "a/b.npy", "victim.txt", "x.npy\0", 5, 2.5,
                  "image.png", "sift_desc.npy", "\n.npy", "~root.npy", "a" * 300 + ".npy"]


def _pick(rng, seq):
    return seq[int(rng.integers(len(seq)))]


def _mutate_map(rng, m: Path, outside: Path) -> None:
    con = sqlite3.connect(m / "map.sqlite")
    for _ in range(int(rng.integers(1, 4))):
        kind = int(rng.integers(8))
        if kind == 0:
            con.execute("UPDATE arrays SET file=? WHERE rowid=?", (_HOSTILE_FILES[rng.integers(len(_HOSTILE_FILES))],
                                                                    int(rng.integers(1, 10))))
        elif kind == 1:
            blob = _pick(rng, [b"", b"\0" * 12, np.full(16, np.nan).tobytes(), (np.eye(4) * 2).tobytes(), "text"])
            con.execute("UPDATE keyframes SET T_map_cam=? WHERE id=?", (blob, int(rng.integers(1, 4))))
        elif kind == 2:
            con.execute(_pick(rng, ["DELETE FROM keyframes WHERE id=2", "DELETE FROM arrays WHERE name='image'",
                                        "DELETE FROM globals", "UPDATE arrays SET sha256='x'",
                                        "UPDATE keyframes SET K=x'00'"]))
        elif kind == 3:
            files = sorted(p for p in (m / "keyframes").rglob("*") if p.is_file())
            files[int(rng.integers(len(files)))].unlink()
        elif kind == 4:
            files = sorted(p for p in m.rglob("*.np[yz]"))
            f = files[int(rng.integers(len(files)))]
            f.write_bytes(_mutate_bytes(rng, f.read_bytes()))
        elif kind == 5:
            doc = _pick(rng, [[1, 2], "text", {"format_version": 1}, {"format_version": 1, "frontend": [1],
                              "image_size": "big"}, {"format_version": 1, "frontend": "classical", "extra": [1]}])
            (m / "map.yaml").write_text(yaml.safe_dump(doc))
        elif kind == 6:
            d = m / "keyframes" / "000002"
            for f in sorted(d.iterdir())[:1]:
                f.unlink()
                f.symlink_to(outside / "victim.txt")
        else:
            (m / "globals" / "notes.txt").write_text("user file")
    con.commit()
    con.close()


def test_fuzz_map_folders(tmp_path):
    template = _small_map(tmp_path / "template")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.txt").write_text("precious")
    rng = np.random.default_rng(11)
    budget = Budget()
    import shutil
    for case in range(25):
        m = tmp_path / f"m{case}"
        shutil.copytree(template, m)
        _mutate_map(rng, m, outside)

        def use():
            with KeyframeMap.open(m) as kmap:
                for i in kmap.keyframe_ids():
                    kmap.get_keyframe(i, arrays=kmap.array_names(i))
                kmap.put_array(kmap.keyframe_ids()[0], "sift_desc", np.zeros((1, 8), np.float32))
                kmap.verify()
                return check_map(kmap)
        budget.run(use, (MapError,), f"map case {case}")
        assert (outside / "victim.txt").read_text() == "precious" and sorted(os.listdir(outside)) == ["victim.txt"]
        notes = m / "globals" / "notes.txt"
        assert not notes.is_symlink() and (not notes.exists() or notes.read_text() == "user file")
    budget.check_memory()
    assert budget.outcomes["refused"] >= 15, budget.outcomes


def _small_dataset(path: Path) -> Path:
    path.mkdir()
    np.savetxt(path / "camera-intrinsics.txt", [[30.0, 0, 15.5], [0, 30.0, 11.5], [0, 0, 1]])
    rng = np.random.default_rng(1)
    for i in range(3):
        cv2.imwrite(str(path / f"frame-{i:06d}.color.png"), rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
        cv2.imwrite(str(path / f"frame-{i:06d}.depth.png"), rng.integers(500, 3000, (24, 32)).astype(np.uint16))
        T = np.eye(4)
        T[:3, 3] = i
        np.savetxt(path / f"frame-{i:06d}.pose.txt", T)
    return path


_TEXT_MUTATIONS = ["", "1 2 3", "nan " * 16, "inf " * 9, "2 0 0 0\n0 2 0 0\n0 0 2 0\n0 0 0 1", "a b c", "1e999 " * 9,
                   "0 0 0\n0 0 0\n0 0 0", "-30 0 15\n0 30 11\n0 0 1", "\0\0"]


def test_fuzz_dataset_folders(tmp_path):
    template = _small_dataset(tmp_path / "template")
    rng = np.random.default_rng(5)
    budget = Budget()
    import shutil
    for case in range(25):
        d = tmp_path / f"d{case}"
        shutil.copytree(template, d)
        files = sorted(d.iterdir())
        for _ in range(int(rng.integers(1, 3))):
            f = files[int(rng.integers(len(files)))]
            if f.suffix == ".txt":
                f.write_text(str(rng.choice(_TEXT_MUTATIONS)))
            elif f.exists():
                f.write_bytes(_mutate_bytes(rng, f.read_bytes()))

        def use():
            ds = open_dataset(d)
            out = []
            for fr in ds.frames():
                rgb, depth = ds.load_rgb(fr), ds.load_depth(fr)
                assert rgb.dtype == np.uint8 and rgb.ndim == 3
                if fr.T_world_cam is not None:
                    R = fr.T_world_cam[:3, :3]
                    assert abs(np.linalg.det(R) - 1) < 1e-2  # only rigid poses come through
                out.append((rgb, depth))
            return out
        budget.run(use, (DatasetError, ValueError), f"dataset case {case}")
    budget.check_memory()
    assert budget.outcomes["refused"] >= 10, budget.outcomes


def test_fuzz_suite_is_deterministic():
    """The cases come from fixed seeds: the same bytes every run (a failure reproduces)."""
    a = _mutate_bytes(np.random.default_rng(18), b"x" * 100)
    b = _mutate_bytes(np.random.default_rng(18), b"x" * 100)
    assert hashlib.sha256(a).digest() == hashlib.sha256(b).digest()
