"""Opening a checkpoint never runs code from it; bad files get errors that name the problem."""
from __future__ import annotations

import argparse
import os

import pytest
import torch

from mast3r_ros.model import (
    CheckpointError,
    ConfigError,
    Mast3rConfig,
    Mast3rNet,
    config_from_constructor,
    load_network,
)

TINY = dict(enc_embed_dim=64, enc_depth=1, enc_num_heads=2, dec_embed_dim=48, dec_depth=10, dec_num_heads=2)
TINY_STRING = ("AsymmetricMASt3R(pos_embed='RoPE100', patch_embed_cls='ManyAR_PatchEmbed', img_size=(512, 512), "
               "head_type='catmlp+dpt', output_mode='pts3d+desc24', depth_mode=('exp', -inf, inf), "
               "conf_mode=('exp', 1, inf), enc_embed_dim=64, enc_depth=1, enc_num_heads=2, dec_embed_dim=48, "
               "dec_depth=10, dec_num_heads=2, two_confs=True, desc_conf_mode=('exp', 0, inf))")


class _RunsCommand:
    """Unpickling this calls os.system: a classic poisoned checkpoint."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def small_state():
    torch.manual_seed(0)
    return Mast3rNet(Mast3rConfig(**TINY)).state_dict()


def test_pickle_that_runs_a_command_is_refused(tmp_path, small_state):
    marker = tmp_path / "pwned"
    path = tmp_path / "poisoned.pth"
    torch.save({"model": small_state, "args": argparse.Namespace(model=TINY_STRING), "x": _RunsCommand(marker)}, path)
    with pytest.raises(CheckpointError, match="allow-list"):
        load_network(path)
    assert not marker.exists()


@pytest.mark.parametrize("bad", [
    "AsymmetricMASt3R(enc_depth=__import__('os').system('touch PWNED'))",
    "AsymmetricMASt3R(enc_depth=len('abc'))",
    "os.system('touch PWNED')",
    "AsymmetricMASt3R(**{'enc_depth': 2})",
    "AsymmetricMASt3R(enc_depth=(lambda: 3)())",
    "AsymmetricMASt3R(depth_mode=('exp', -float('inf'), inf))",
    "AsymmetricMASt3R(enc_depth=2); import os",
])
def test_constructor_with_code_is_refused(tmp_path, small_state, bad):
    path = tmp_path / "evil.pth"
    torch.save({"model": small_state, "args": argparse.Namespace(model=bad)}, path)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        with pytest.raises(CheckpointError, match="refused"):
            load_network(path)
    finally:
        os.chdir(cwd)
    assert not (tmp_path / "PWNED").exists()


def test_unknown_class_and_keywords_are_refused():
    with pytest.raises(ConfigError, match="unknown model class"):
        config_from_constructor("AsymmetricCroCo3DStereo(enc_depth=2)")
    with pytest.raises(ConfigError, match="unknown constructor keyword 'bogus'"):
        config_from_constructor("AsymmetricMASt3R(bogus=1)")
    with pytest.raises(ConfigError, match="head_type"):
        config_from_constructor("AsymmetricMASt3R(head_type='linear', dec_depth=12)")


def test_good_checkpoint_loads_and_checkpoint_without_args_needs_a_config(tmp_path, small_state):
    path = tmp_path / "ok.pth"
    torch.save({"model": small_state, "args": argparse.Namespace(model=TINY_STRING)}, path)
    net = load_network(path)
    assert torch.equal(net.state_dict()["enc_norm.weight"], small_state["enc_norm.weight"])
    bare = tmp_path / "bare.pth"
    torch.save({"model": small_state}, bare)
    with pytest.raises(CheckpointError, match="no .args.model. constructor string .a bare state dict.: re-save"):
        load_network(bare)
    assert load_network(bare, Mast3rConfig(**TINY)).cfg.enc_embed_dim == 64


def test_mismatching_checkpoint_lists_first_problems(tmp_path, small_state):
    state = dict(small_state)
    del state["enc_norm.bias"]
    state["dec_norm.weight"] = torch.zeros(7)
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "mismatch.pth"
    torch.save({"model": state, "args": argparse.Namespace(model=TINY_STRING)}, path)
    with pytest.raises(CheckpointError) as info:
        load_network(path)
    text = str(info.value)
    assert "missing key enc_norm.bias" in text and "unexpected key extra.weight" in text
    assert "shape of dec_norm.weight: checkpoint (7,) vs network (48,)" in text


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_network(tmp_path / "nope.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError):
        load_network(junk)


def test_state_dict_round_trips_unchanged(tmp_path, small_state):
    """Internal weight layouts (RoPE pair order, channels-last) never leak into saved state dicts."""
    from mast3r_ros.model import Mast3rModel

    path = tmp_path / "ok.pth"
    torch.save({"model": small_state, "args": argparse.Namespace(model=TINY_STRING)}, path)
    model = Mast3rModel(load_network(path))
    saved = model.net.state_dict()
    assert list(saved) == list(small_state)
    for key, value in small_state.items():
        assert torch.equal(saved[key], value), key
