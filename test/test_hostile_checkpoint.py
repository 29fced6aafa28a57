"""Hostile checkpoints (issue 18, cases 4, 5, 6, 8): resources bounded before allocation, poisoned or
unsupported weights refused with one line naming the tensor, no traceback and no misleading advice."""
from __future__ import annotations

import argparse
import io
import resource
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from mast3r_ros.model import CheckpointError, ConfigError, Mast3rConfig, Mast3rNet, checkpoint, load_network
from mast3r_ros.model.config import config_from_constructor

TINY = dict(enc_embed_dim=64, enc_depth=1, enc_num_heads=2, dec_embed_dim=48, dec_depth=10, dec_num_heads=2)
TINY_STRING = ("AsymmetricMASt3R(pos_embed='RoPE100', patch_embed_cls='ManyAR_PatchEmbed', img_size=(512, 512), "
               "head_type='catmlp+dpt', output_mode='pts3d+desc24', depth_mode=('exp', -inf, inf), "
               "conf_mode=('exp', 1, inf), enc_embed_dim=64, enc_depth=1, enc_num_heads=2, dec_embed_dim=48, "
               "dec_depth=10, dec_num_heads=2, two_confs=True, desc_conf_mode=('exp', 0, inf))")


def _with(**kw) -> str:
    """TINY_STRING with keyword values replaced by the given source texts."""
    text = TINY_STRING
    for key, value in kw.items():
        start = text.index(f"{key}=") if f"{key}=" in text else None
        if start is None:
            text = text[:-1] + f", {key}={value})"
            continue
        depth, end = 0, start
        while True:  # end of this keyword's value: the next top-level comma or the closing parenthesis
            c = text[end]
            if c in "([":
                depth += 1
            elif c in ")]":
                if depth == 0:
                    break
                depth -= 1
            elif c == "," and depth == 0:
                break
            end += 1
        text = text[:start] + f"{key}={value}" + text[end:]
    return text


@pytest.fixture(scope="module")
def state():
    """A few real entries: every check here happens before the state is matched to a network (the full tiny
    network's state is 170 MB, slow to save and read on a loaded machine)."""
    g = torch.Generator().manual_seed(0)
    full = Mast3rNet(Mast3rConfig(**TINY)).state_dict()
    return {k: torch.randn(full[k].shape, generator=g) for k in ("mask_token", "enc_norm.weight", "enc_norm.bias")}


def _save(path: Path, state, constructor=TINY_STRING) -> Path:
    torch.save({"model": state, "args": argparse.Namespace(model=constructor)}, path)
    return path


@pytest.mark.parametrize("values, words", [
    ({"enc_depth": "1000000"}, r"enc_depth=1000000: must be an integer in \[1, 64\]"),
    ({"enc_num_heads": "0"}, "enc_num_heads=0"),
    ({"dec_embed_dim": "-48"}, "dec_embed_dim=-48"),
    ({"enc_embed_dim": "'64'"}, "enc_embed_dim='64'"),
    ({"patch_size": "16.0"}, "patch_size=16.0: must be an integer"),
    ({"depth_mode": "()"}, r"depth_mode=\(\): must be \(kind, low, high\)"),
    ({"conf_mode": "('exp', 1)"}, "conf_mode"),
    ({"mlp_ratio": "1e999"}, "mlp_ratio=inf"),
    ({"img_size": "(512, 1e9)"}, "img_size"),
    ({"two_confs": "'yes'"}, "two_confs='yes'"),
    ({"output_mode": "'pts3d+desc99999999'"}, "desc_dim=99999999"),
    ({"enc_embed_dim": "4096", "enc_num_heads": "64", "enc_depth": "64"}, "G parameters"),
    ({"enc_depth": "(" * 300 + "1" + ")" * 300}, "refused|nested"),
    ({"enc_depth": "(" * 90 + "1" + ",)" * 90}, "enc_depth=.*must be an integer"),
    ({"enc_depth": "-" * 5000 + "1"}, "refused|nested"),
])
def test_bad_constructor_values_are_refused_before_any_layer(tmp_path, state, values, words, monkeypatch):
    path = _save(tmp_path / "c.pth", state, _with(**values))
    built = []
    monkeypatch.setattr(checkpoint, "Mast3rNet", lambda cfg: built.append(cfg))
    with pytest.raises(CheckpointError, match=words) as info:
        load_network(path)
    assert "\n" not in str(info.value)
    assert built == []  # refused before any layer is built (enc_depth=1000000 used to build until OOM)


def test_huge_constructor_string_is_refused_by_length(tmp_path):
    text = _with(desc_mode="'" + "x" * 26_000_000 + "'")
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ConfigError, match="constructor string of 26000.* characters"):
        config_from_constructor(text)
    # peak RSS grew by less than 200 MB (3.5 GB before; ast.parse is never called now)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0 < 200_000


def _tensor_cases(state):
    key = "enc_norm.weight"
    good = state[key]
    return {
        "meta": ({key: torch.empty(good.shape, device="meta")}, "meta tensor"),
        "sparse": ({key: good.to_sparse()}, "sparse_coo"),
        "int": ({key: good.to(torch.int32)}, "dtype torch.int32"),
        "bool": ({key: good > 0}, "dtype torch.bool"),
        "quantized": ({key: torch.quantize_per_tensor(good, 0.1, 0, torch.qint8)}, "quantized tensor"),
        "complex": ({key: good.to(torch.complex64)}, "dtype torch.complex64"),
        "string": ({key: "weights"}, "is a str, not a tensor"),
        "list": ({key: [1.0, 2.0]}, "is a list, not a tensor"),
        "nan": ({key: torch.where(torch.arange(good.numel()) == 3, float("nan"), good)}, "1 non-finite values"),
        "inf": ({key: torch.full_like(good, float("inf"))}, f"{good.numel()} non-finite values"),
    }


@pytest.mark.parametrize("case", ["meta", "sparse", "int", "bool", "quantized", "complex", "string", "list",
                                  "nan", "inf"])
def test_unsupported_or_poisoned_tensors_are_refused_naming_them(tmp_path, state, case):
    change, words = _tensor_cases(state)[case]
    path = _save(tmp_path / f"{case}.pth", {**state, **change})
    with pytest.raises(CheckpointError, match=words) as info:
        load_network(path)
    assert "enc_norm.weight" in str(info.value) and "\n" not in str(info.value)


def _patch_central_size(data: bytes, new_size: int) -> bytes:
    """Set the uncompressed size recorded in the first central-directory entry."""
    at = data.index(b"PK\x01\x02")
    return data[:at + 24] + struct.pack("<I", new_size) + data[at + 28:]


def test_zip_bombs_and_non_archives_are_refused_before_reading(tmp_path, state):
    bomb = tmp_path / "bomb.pth"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data.pkl", b"\0" * 50_000_000)  # 50 MB of zeros in ~50 KB
    assert bomb.stat().st_size < 100_000
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(CheckpointError, match="'archive/data.pkl' is compressed"):
        load_network(bomb)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0 < 30_000  # nothing was inflated
    liar = tmp_path / "liar.pth"
    liar.write_bytes(_patch_central_size(_save(tmp_path / "ok.pth", state).read_bytes(), 2_000_000_000))
    with pytest.raises(CheckpointError, match="declares 2000000000 bytes, more than the"):
        load_network(liar)
    text = tmp_path / "t.pth"
    text.write_text("this is a text file starting with t")
    with pytest.raises(CheckpointError, match="is not a PyTorch checkpoint"):
        load_network(text)
    legacy = tmp_path / "legacy.pth"  # the pre-1.6 non-zip format: storages sized by the pickle
    buf = io.BytesIO()
    torch.save({"model": state}, buf, _use_new_zipfile_serialization=False)
    legacy.write_bytes(buf.getvalue())
    with pytest.raises(CheckpointError, match="is not a PyTorch checkpoint"):
        load_network(legacy)


def test_refused_pickle_never_advises_weights_only_false(tmp_path, state):
    path = tmp_path / "evil.pth"
    torch.save({"model": state, "x": subprocess.Popen}, path)
    with pytest.raises(CheckpointError) as info:
        load_network(path)
    text = str(info.value)
    assert ".Popen" in text and "weights_only" not in text and "\n" not in text


def test_cli_errors_are_one_line_with_exit_code_2(tmp_path, state):
    """infer-pair on hostile checkpoints: rc 2, one stderr line, no traceback (--debug shows it)."""
    bad = _save(tmp_path / "deep.pth", state, _with(enc_depth="1000000"))
    img = Path(__file__).parents[1] / "../shared/data/7scenes_redkitchen/data/frame-000000.color.jpg"
    cmd = [sys.executable, "-m", "mast3r_ros.cli", "infer-pair", "--checkpoint", str(bad), str(img), str(img),
           "--out", str(tmp_path / "o.npz")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "enc_depth=1000000" in proc.stderr and str(bad) in proc.stderr
