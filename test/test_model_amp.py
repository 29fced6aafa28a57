"""Mixed precision: bf16 autocast on CPU stays close to float32, and 'auto' resolves per CPU features."""
from __future__ import annotations

import argparse

import numpy as np
import PIL.Image
import pytest
import torch

from mast3r_ros.cli import infer_pair
from mast3r_ros.matching import fast_reciprocal_nn
from mast3r_ros.model import InferenceConfig, Mast3rModel
from mast3r_ros.model.precision import cpu_flags, output_differences, resolve_amp


@pytest.fixture(scope="module")
def pair_outputs(tiny_checkpoint, tiny_io):
    torch.set_num_threads(2)
    fp32 = Mast3rModel.from_checkpoint(tiny_checkpoint)
    bf16 = Mast3rModel(fp32.net, InferenceConfig(amp_dtype="bf16"))
    assert bf16.precision == "bf16" and fp32.precision == "fp32"
    img1, img2 = torch.from_numpy(tiny_io["pair0_img1"]), torch.from_numpy(tiny_io["pair0_img2"])
    return fp32.infer_pair(img1, img2), bf16.infer_pair(img1, img2)


def test_bf16_on_cpu_stays_within_measured_distance_of_fp32(pair_outputs):
    ref, amp = pair_outputs
    for view in (0, 1):
        for key in ("pts3d", "conf", "desc", "desc_conf"):
            assert amp[view][key].dtype == torch.float32, f"{key} must come out float32 under autocast"
        diff = output_differences(ref[view], amp[view])
        # Measured on the fixture's three pairs (tiny checkpoint, both views), 2-core AMD EPYC:
        # pts3d median 0.73-1.13 %, p99 1.9-2.8 %; conf median 0.13-0.28 %; desc_conf median ~0.20 %.
        assert diff["pts3d_rel_median"] <= 0.015, diff
        assert diff["pts3d_rel_p99"] <= 0.035, diff
        assert diff["conf_rel_median"] <= 0.004, diff
        assert diff["desc_conf_rel_median"] <= 0.003, diff
        assert diff["desc_cos_median"] >= 0.9999, diff
        # And it is not float32 run twice: bf16 does change the outputs.
        assert diff["pts3d_rel_median"] > 1e-5, diff


def test_bf16_descriptors_give_mostly_the_same_reciprocal_matches(pair_outputs):
    ref, amp = pair_outputs

    def matches(preds):
        xy1, xy2 = fast_reciprocal_nn(preds[0]["desc"][0], preds[1]["desc"][0], subsample=8)
        return {tuple(row) for row in np.concatenate([xy1, xy2], 1).tolist()}

    a, b = matches(ref), matches(amp)
    # Measured Jaccard of the two match sets: 0.80-0.82 on the fixture's three pairs (~660 matches on pair0).
    assert len(a & b) / len(a | b) >= 0.75, (len(a), len(b), len(a & b))


@pytest.mark.parametrize("flags, expected", [
    ({"avx2", "amx_bf16", "amx_tile", "avx512_bf16"}, "bf16"),   # Sapphire Rapids and later
    ({"avx2", "avx512f", "avx512_bf16"}, "bf16"),                # e.g. AMD Zen 4 (see bench_forward)
    ({"avx2", "avx512f"}, "fp32"),                               # no bf16 instructions
    (set(), "fp32"),                                             # flags unreadable
])
def test_auto_on_cpu_follows_the_cpu_flags(flags, expected):
    assert resolve_amp("auto", "cpu", frozenset(flags)) == expected


def test_auto_on_cuda_prefers_bf16_where_supported():
    assert resolve_amp("auto", "cuda", cuda_bf16=True) == "bf16"
    assert resolve_amp("auto", "cuda", cuda_bf16=False) == "fp16"


def test_explicit_choices_and_bad_values():
    for off in (None, "", "fp32"):
        assert resolve_amp(off, "cpu") == "fp32"
    assert resolve_amp("bf16", "cpu") == "bf16"
    assert resolve_amp("fp16", "cuda") == "fp16"
    with pytest.raises(ValueError, match="'fp16' is not supported on CPU"):
        InferenceConfig(amp_dtype="fp16").validate()
    with pytest.raises(ValueError, match="amp_dtype must be one of"):
        InferenceConfig(amp_dtype="int8").validate()


def test_cpu_flags_parses_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert cpu_flags(info) == {"fpu", "avx512f", "avx512_bf16"}
    assert cpu_flags(tmp_path / "missing") == frozenset()


def test_infer_pair_command_runs_in_bf16_on_cpu(tiny_checkpoint, tiny_io, pair_outputs, tmp_path):
    paths = []
    for view in ("1", "2"):
        rgb = np.round((tiny_io[f"pair0_img{view}"][0] * 0.5 + 0.5) * 255).astype(np.uint8).transpose(1, 2, 0)
        paths.append(str(tmp_path / f"view{view}.png"))
        PIL.Image.fromarray(rgb).save(paths[-1])
    parser = argparse.ArgumentParser()
    infer_pair.add_arguments(parser)
    args = parser.parse_args(["--checkpoint", str(tiny_checkpoint), *paths, "--out", str(tmp_path / "o.npz"),
                              "--amp", "bf16"])
    assert infer_pair.run(args) == 0
    z = np.load(tmp_path / "o.npz")
    # Same images, same bf16 policy, same process as the fixture run above: the same outputs, bit for bit
    np.testing.assert_array_equal(z["pred1_pts3d"], pair_outputs[1][0]["pts3d"].numpy())
