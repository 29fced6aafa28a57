"""MASt3R front-end: cached encodings, depth vs predicted 3D, end to end with the tiny checkpoint.

The tiny fixture network has random weights, so poses are meaningless here; these tests check the
plumbing (pixel maps, 3D lookup, caching, checkpoint bookkeeping) and that the path runs end to end.
"""
from __future__ import annotations

import numpy as np
import pytest

from mast3r_ros.datasets.readers import open_dataset
from mast3r_ros.localization.frontends import FrontEndError, QueryFrame
from mast3r_ros.localization.frontends.mast3r import Mast3rFrontEnd, Mast3rFrontEndConfig, network_pointmap_from_depth
from mast3r_ros.localization.localizer import Localizer, LocalizerConfig
from mast3r_ros.localization.retrieval import RetrievalConfig
from mast3r_ros.map import Keyframe, KeyframeMap
from mast3r_ros.map.build import build_map
from mast3r_ros.model import Mast3rModel, preprocess_array
from mast3r_ros.model.inference import HEADS


@pytest.fixture(scope="module")
def frontend(tiny_checkpoint):
    return Mast3rFrontEnd(Mast3rFrontEndConfig(checkpoint=str(tiny_checkpoint)))


@pytest.fixture(scope="module")
def kitchen(data_dir):
    return open_dataset(data_dir / "7scenes_redkitchen")


def test_network_pointmap_is_the_depth_backprojection_of_the_mapped_pixel(kitchen):
    frame = kitchen.frames("0:1")[0]
    depth = kitchen.load_depth(frame)
    tf = preprocess_array(kitchen.load_rgb(frame)).transform
    X = network_pointmap_from_depth(kitchen.K, depth, tf)
    assert X.shape == (384, 512, 3)
    # Network pixel (xn, yn) of a 640 -> 512 resize sits at original (xn + 0.5) * 1.25 - 0.5.
    for xn, yn in [(100, 50), (300, 200), (511, 383)]:
        x, y = (xn + 0.5) * 1.25 - 0.5, (yn + 0.5) * 1.25 - 0.5
        xi, yi = int(np.rint(x)), int(np.rint(y))
        z = depth[yi, xi]
        if z > 0:
            expected = z * np.linalg.inv(kitchen.K) @ [xi, yi, 1.0]
            np.testing.assert_allclose(X[yn, xn], expected, rtol=1e-6)
        else:
            assert np.isnan(X[yn, xn]).all()


def test_matches_carry_keyframe_3d_in_the_map_frame(frontend, kitchen):
    f_kf, f_q = kitchen.frames("0:1")[0], kitchen.frames("30:31")[0]
    img_kf = kitchen.load_rgb(f_kf)
    arrays = frontend.prepare_keyframe(img_kf, kitchen.K, kitchen.load_depth(f_kf))
    assert arrays["mast3r_tokens"].shape == (768, 128) and arrays["mast3r_X"].shape == (384, 512, 3)
    kf = Keyframe(7, 0, 0.0, None, kitchen.K, f_kf.T_world_cam, None, arrays)
    query = QueryFrame(kitchen.load_rgb(f_q), kitchen.K)
    corr = frontend.match(query, kf)
    assert len(corr) > 50 and corr.kf_id == 7
    assert np.isfinite(corr.X_map).all() and ((corr.conf > 0) & (corr.conf < 1)).all()
    xy = corr.xy_query
    assert (xy >= -0.5).all() and (xy[:, 0] <= 639.5).all() and (xy[:, 1] <= 479.5).all()
    # Every 3D point is a depth point of the keyframe, moved into the map frame.
    T_cam_world = np.linalg.inv(f_kf.T_world_cam)  # 7-Scenes rotations are orthonormal to 4e-4 only
    X_cam = corr.X_map @ T_cam_world[:3, :3].T + T_cam_world[:3, 3]
    uv = X_cam[:, :2] / X_cam[:, 2:] * 585.0 + [320.0, 240.0]
    depth = kitchen.load_depth(f_kf)
    ui, vi = np.rint(uv[:, 0]).astype(int), np.rint(uv[:, 1]).astype(int)
    np.testing.assert_allclose(X_cam[:, 2], depth[vi, ui], rtol=1e-5)


def test_keyframe_without_depth_uses_the_predicted_pointmap(frontend, kitchen):
    f_kf, f_q = kitchen.frames("0:1")[0], kitchen.frames("30:31")[0]
    arrays = frontend.prepare_keyframe(kitchen.load_rgb(f_kf), kitchen.K, None)
    assert arrays["mast3r_X"].size == 0
    kf = Keyframe(3, 0, 0.0, None, kitchen.K, np.eye(4), None, arrays)
    corr = frontend.match(QueryFrame(kitchen.load_rgb(f_q), kitchen.K), kf)
    assert np.isfinite(corr.X_map).all()


def test_end_to_end_map_and_localize_with_tiny_checkpoint(frontend, kitchen, tmp_path, tiny_checkpoint):
    build_map(kitchen, "0:30:9", frontend, tmp_path / "map", store_depth=False)
    config = LocalizerConfig(retrieval=RetrievalConfig(top_k=2))
    with KeyframeMap.open(tmp_path / "map") as kmap:
        assert kmap.meta.frontend == "mast3r" and len(kmap) == 4
        localizer = Localizer(kmap, frontend, config)
        for frame in kitchen.frames("60:66:3"):
            result = localizer.localize(kitchen.load_rgb(frame), kitchen.K, stamp=frame.timestamp)
            assert result.n_matches > 0 and result.kf_ids, result.error
            assert set(result.timings) >= {"retrieval", "matching", "pnp", "total"}
        # A front-end with another checkpoint must refuse the map's cached encodings.
        other = Mast3rFrontEnd(Mast3rFrontEndConfig(checkpoint=str(tiny_checkpoint)), model=frontend.model)
        with pytest.raises(FrontEndError, match="different MASt3R checkpoint"):
            Localizer(kmap, other)


def test_missing_checkpoint_is_a_clear_error():
    with pytest.raises(FrontEndError, match="needs a checkpoint"):
        Mast3rFrontEnd(Mast3rFrontEndConfig())


class RecordingModel(Mast3rModel):
    """The fixture network, recording each decode: keyframe-side tokens and the heads asked for."""

    def __init__(self, net):
        super().__init__(net)
        self.calls: list[tuple[np.ndarray, set, set]] = []

    def infer(self, enc1, enc2, heads1=HEADS, heads2=HEADS):
        self.calls.append((enc1.tokens.float().numpy().copy(), set(heads1), set(heads2)))
        return super().infer(enc1, enc2, heads1, heads2)


@pytest.fixture(scope="module")
def recorded_map(frontend, kitchen, tmp_path_factory):
    """A 4-keyframe map with depth (so only descriptor heads are needed) and a recording front-end, at
    256 px: what these tests check (which keyframes are decoded, batched = one at a time) does not depend on
    the size, and FRM on the random network's descriptors is 4x cheaper than at 512."""
    model = RecordingModel(frontend.model.net)
    rec = Mast3rFrontEnd(Mast3rFrontEndConfig(image_size=256), model=model)
    return build_map(kitchen, "0:30:9", rec, tmp_path_factory.mktemp("rec") / "map"), rec, model


def _decoded_ids(kmap, tokens: np.ndarray) -> list[int]:
    """Which map keyframes a decode's keyframe-side token batch [B, N, C] came from."""
    stored = {i: kmap.get_keyframe(i, load_image=False, arrays=["mast3r_tokens"], load_depth=False)
              .arrays["mast3r_tokens"] for i in kmap.keyframe_ids()}
    return [next(i for i, t in stored.items() if np.array_equal(t, row)) for row in tokens]


def test_keyframes_decoded_in_global_and_in_tracking_mode(recorded_map, kitchen):
    path, rec, model = recorded_map
    frame = kitchen.frames("60:61")[0]
    config = LocalizerConfig(retrieval=RetrievalConfig(top_k=3, tracking_k=1, tracking_retry=False))
    with KeyframeMap.open(path) as kmap:
        loc = Localizer(kmap, rec, config)
        # No prior (INIT): retrieval picks the top 3, decoded in one batch, descriptor heads only.
        model.calls.clear()
        r = loc.localize(kitchen.load_rgb(frame), kitchen.K)
        assert r.selection == "retrieval" and len(r.kf_ids) == 3, r.error
        assert len(model.calls) == 1
        tokens, heads_k, heads_q = model.calls[0]
        assert _decoded_ids(kmap, tokens) == r.kf_ids
        assert heads_k == {"desc"} and heads_q == {"desc"}
        # Tracking (prior = keyframe 2's pose): only the keyframe nearest the prior, no retrieval.
        poses = kmap.poses()
        loc.state.update(poses[2])
        model.calls.clear()
        r = loc.localize(kitchen.load_rgb(frame), kitchen.K)
        assert r.selection == "prior" and r.kf_ids == [2]
        assert [_decoded_ids(kmap, c[0]) for c in model.calls] == [[2]]
        # A localize request while tracking goes back to retrieval for one query.
        loc.state.update(poses[2])
        loc.request_retrieval()
        model.calls.clear()
        r = loc.localize(kitchen.load_rgb(frame), kitchen.K)
        assert r.selection == "retrieval" and len(model.calls) == 1 and len(model.calls[0][0]) == 3


def test_a_failed_tracking_query_is_retried_by_retrieval_without_decoding_a_keyframe_twice(recorded_map, kitchen):
    """The default ``tracking_retry``: the random-weight network gives no pose from the tracking keyframe,
    so the same query goes on to retrieval, which decodes only the keyframes not decoded yet."""
    path, rec, model = recorded_map
    image = kitchen.load_rgb(kitchen.frames("60:61")[0])
    with KeyframeMap.open(path) as kmap:
        loc = Localizer(kmap, rec, LocalizerConfig(retrieval=RetrievalConfig(top_k=3)))
        assert loc.retriever.config.tracking_k == 1 and loc.retriever.config.tracking_retry  # MASt3R's default
        retrieved = loc.localize(image, kitchen.K).kf_ids  # no prior: retrieval
        tracked = retrieved[0]  # the prior sits on a keyframe that retrieval also returns
        loc.state.update(kmap.poses()[tracked])
        model.calls.clear()
        r = loc.localize(image, kitchen.K)
        assert r.selection == "retrieval" and r.kf_ids == retrieved and r.error
        decoded = [_decoded_ids(kmap, c[0]) for c in model.calls]
        assert decoded == [[tracked], retrieved[1:]], decoded  # the tracked keyframe decoded once


def test_batched_matching_equals_one_keyframe_at_a_time(recorded_map, kitchen):
    path, rec, _ = recorded_map
    query = QueryFrame(kitchen.load_rgb(kitchen.frames("60:61")[0]), kitchen.K)
    with KeyframeMap.open(path) as kmap:
        kfs = [kmap.get_keyframe(i, load_image=False, arrays=list(rec.array_names), load_depth=False)
               for i in kmap.keyframe_ids()]
        batched = rec.match_many(query, kfs)
        single = [rec.match(query, kf) for kf in kfs]
    for b, s in zip(batched, single):
        assert b.kf_id == s.kf_id and len(s) > 0
        sb = {tuple(r) for r in np.round(b.xy_query, 6).tolist()}
        ss = {tuple(r) for r in np.round(s.xy_query, 6).tolist()}
        # Measured: the same match sets for all four keyframes (101-120 matches each).
        assert sb == ss, (len(sb), len(ss), len(sb & ss))
