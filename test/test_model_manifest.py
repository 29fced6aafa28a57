"""The released configuration has exactly the official state-dict keys, shapes and aliasing."""
from __future__ import annotations

import json

import pytest
import torch

from mast3r_ros.model import RELEASED, Mast3rNet, config_from_constructor


@pytest.fixture(scope="module")
def manifest(fixtures_dir):
    return json.loads((fixtures_dir / "mast3r_full_manifest.json").read_text())


@pytest.mark.parametrize("string_key", ["checkpoint_args_model", "instantiated_as"])
def test_released_constructor_strings_parse_to_released_config(manifest, string_key):
    assert config_from_constructor(manifest["released"][string_key]) == RELEASED


def test_released_state_dict_keys_and_shapes(manifest):
    released = manifest["released"]
    with torch.device("meta"):
        net = Mast3rNet(config_from_constructor(released["checkpoint_args_model"]))
    state = net.state_dict()
    ours = [(k, list(v.shape), str(v.dtype).replace("torch.", "")) for k, v in state.items()]
    official = [(e["key"], e["shape"], e["dtype"]) for e in released["state_dict"]]
    assert ours == official
    assert len(state) == released["n_state_dict_entries"]
    assert sum(v.numel() for v in state.values()) == released["n_state_dict_elements_counting_aliases_twice"]
    assert sum(p.numel() for p in net.parameters()) == released["n_parameters"]  # aliases counted once
    assert sum(b.numel() for b in net.buffers()) == released["n_buffer_elements"]
    assert net.cfg.dpt_hooks == released["dpt_hooks"]


def test_aliased_keys_share_one_tensor(manifest):
    with torch.device("meta"):
        net = Mast3rNet(RELEASED)
    params = dict(net.named_parameters(remove_duplicate=False))
    for a, b in manifest["released"]["aliased_keys"]:
        assert params[a] is params[b]


def test_tiny_config_keys_in_order(manifest):
    tiny = manifest["tiny"]
    cfg = config_from_constructor(tiny["checkpoint_args_model"])
    assert (cfg.enc_embed_dim, cfg.enc_depth, cfg.dec_embed_dim, cfg.dec_depth) == (128, 3, 96, 10)
    with torch.device("meta"):
        net = Mast3rNet(cfg)
    assert list(net.state_dict()) == tiny["state_dict_keys_in_order"]
    assert sum(p.numel() for p in net.parameters()) == tiny["n_parameters"]
    assert cfg.dpt_hooks == tiny["dpt_hooks"]
