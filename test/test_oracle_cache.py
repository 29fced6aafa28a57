"""The stand-in's disk memo (``model/oracle_cache.py``): a stand-in built from the cache answers exactly as
one computed from the dataset with the memo off (frames and crops identified the same, the same encoder
tokens, which carry the anchors); a second build reads no image; a changed colour file is registered
again from its new pixels; an unreadable entry is computed again; a cache folder that cannot be written
costs nothing."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch

from mast3r_ros.datasets.readers import open_dataset
from mast3r_ros.matching.coarse_to_fine import normalize_rgb
from mast3r_ros.model import preprocess_array
from mast3r_ros.model.oracle import OracleModel
from mast3r_ros.model.oracle_scene import OracleError, OracleSource

from .recipes import dataset_excerpt

FRAMES = range(0, 31, 3)   # 11 frames of 7-Scenes redkitchen (links)


@pytest.fixture
def excerpt(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("MAST3R_ROS_CACHE", str(tmp_path / "cache"))
    return dataset_excerpt(data_dir / "7scenes_redkitchen" / "data", tmp_path / "kitchen11", FRAMES)


def _answers(model: OracleModel, ds) -> tuple:
    """What the stand-in says about each frame (its view id, its encoder tokens) and about a crop."""
    frames = ds.frames()
    tokens = []
    for f in frames:
        enc = model.encode(preprocess_array(ds.load_rgb(f)).tensor)
        assert model.frame_index(enc, 0) == f.index
        tokens.append(enc.tokens[0].numpy())
    rgb = ds.load_rgb(frames[4])
    crop = model.encode(normalize_rgb([rgb[37:37 + 384, 53:53 + 512]]))
    return np.stack(tokens), model.source.crop_box(model.frame_index(crop, 0))


def test_a_cached_stand_in_answers_exactly_as_a_computed_one(excerpt, monkeypatch):
    ds = open_dataset(excerpt)
    monkeypatch.setenv("MAST3R_ROS_ORACLE_CACHE", "0")
    computed = _answers(OracleModel.from_dataset(ds), ds)
    assert not (excerpt.parent / "cache" / "oracle").exists()      # the memo off writes nothing
    monkeypatch.delenv("MAST3R_ROS_ORACLE_CACHE")
    first = _answers(OracleModel.from_dataset(ds), ds)               # computed and stored
    assert len(list((excerpt.parent / "cache" / "oracle").glob("*.npz"))) == len(FRAMES) + 1

    # a second build reads the memo: no colour or depth image is opened
    def no_reading(*_):
        raise AssertionError("the cached stand-in read an image")
    with monkeypatch.context() as m:
        m.setattr(type(ds), "load_rgb", no_reading)
        m.setattr(type(ds), "load_depth", no_reading)
        cached = OracleModel.from_dataset(ds)
    again = _answers(cached, ds)
    for got in (first, again):
        np.testing.assert_array_equal(got[0], computed[0])             # exact: tokens carry the anchors
        assert got[1] == computed[1] == (FRAMES[4], (53, 37, 53 + 512, 37 + 384))


def test_a_changed_colour_file_is_registered_from_its_new_pixels(excerpt):
    link = excerpt / "frame-000000.color.jpg"
    original = os.path.realpath(link)
    link.unlink()
    shutil.copyfile(original, link)                                   # a file of its own, changed below
    ds = open_dataset(excerpt)
    old = preprocess_array(ds.load_rgb(ds.frames()[0])).tensor
    OracleModel.from_dataset(ds)                                      # memo filled
    with open(link, "wb") as f:                                       # in place: same path, new pixels
        f.write(open(excerpt / "frame-000030.color.jpg", "rb").read())
    model = OracleModel.from_dataset(open_dataset(excerpt))
    with pytest.raises(OracleError, match="not a registered frame"):
        model.encode(old)
    new = preprocess_array(ds.load_rgb(ds.frames()[0])).tensor
    assert model.frame_index(model.encode(new), 0) in (0, 30)         # same pixels as frame 30: either


def test_unreadable_entries_are_computed_again_and_an_unwritable_cache_costs_nothing(excerpt):
    ds = open_dataset(excerpt)
    want = OracleSource(ds).patch_tokens(FRAMES[2])
    folder = excerpt.parent / "cache" / "oracle"
    for p in folder.glob("*.npz"):
        p.write_bytes(b"not an npz")
    np.testing.assert_array_equal(OracleSource(ds).patch_tokens(FRAMES[2]), want)
    assert all(p.read_bytes()[:2] == b"PK" for p in folder.glob("*.npz"))   # written again, whole
    shutil.rmtree(folder)
    folder.write_text("a file where the cache folder goes: nothing can be stored")
    np.testing.assert_array_equal(OracleSource(ds).patch_tokens(FRAMES[2]), want)


def test_a_crop_of_an_unregistered_frame_stays_unknown_with_the_memo(excerpt):
    ds = open_dataset(excerpt)
    OracleModel.from_dataset(ds, frames=[0, 3])
    model = OracleModel.from_dataset(ds, frames=[0])                 # the memo holds frame 3; not registered
    rgb = ds.load_rgb(ds.frames("3:4")[0])
    with pytest.raises(OracleError, match="not a registered frame"):
        model.encode(normalize_rgb([rgb[10:394, 20:532]]))
    with pytest.raises(OracleError, match="not a registered frame"):
        model.encode(torch.as_tensor(preprocess_array(rgb).tensor))
