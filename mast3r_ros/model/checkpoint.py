"""Safe loading of MASt3R checkpoints in the official file layout.

The released ``.pth`` files are pickles holding ``{'model': state_dict, 'args': Namespace(model=str)}``.
Unpickling arbitrary objects can run code, so we unpickle with ``weights_only=True`` and allow only
``argparse.Namespace``; the constructor string is parsed by :mod:`.config` without evaluation.

A file must not be able to ask for unbounded resources or poison outputs silently, so before anything
is read the zip archive is checked (members stored uncompressed, as ``torch.save`` writes them, and
their sizes within the file's size: no zip bomb); after reading, every weight must be a dense, finite
floating-point tensor; and the configuration is range-checked before any layer is built.
"""
from __future__ import annotations

import argparse
import hashlib
import pickle
import re
import zipfile
from pathlib import Path

import torch

from .config import ConfigError, Mast3rConfig, config_from_constructor
from .network import Mast3rNet

MAX_LISTED_MISMATCHES = 10
MAX_ZIP_MEMBERS = 100_000  # a released checkpoint has ~1,000
WEIGHT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded: unsafe, unreadable, or not matching the network."""


def file_sha256(path: str | Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def check_archive(path: Path) -> None:
    """Refuse, before reading, a file that is not a torch zip archive or whose members could expand
    beyond the file itself (compressed members, declared sizes larger than the file)."""
    size = path.stat().st_size
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a PyTorch checkpoint (torch.save zip archive): {exc}") from None
    if len(infos) > MAX_ZIP_MEMBERS:
        raise CheckpointError(f"{path}: {len(infos)} archive members (at most {MAX_ZIP_MEMBERS}); not a checkpoint")
    for info in infos:
        if info.compress_type != zipfile.ZIP_STORED:
            raise CheckpointError(f"{path}: archive member {info.filename!r} is compressed; torch.save stores "
                                  "members uncompressed, refusing (a compressed member can expand without bound)")
        if info.file_size > size:
            raise CheckpointError(f"{path}: archive member {info.filename!r} declares {info.file_size} bytes, "
                                  f"more than the {size}-byte file; damaged or hostile")
    total = sum(i.file_size for i in infos)
    if total > size:
        raise CheckpointError(f"{path}: archive members declare {total} bytes in all, more than the "
                              f"{size}-byte file; damaged or hostile")


def _refused_pickle_message(path: Path, exc: Exception) -> str:
    """One line naming the refused object (torch's text advises weights_only=False: never do that here)."""
    match = re.search(r"GLOBAL ([\w.]+)", str(exc))
    what = f"the Python object {match.group(1)}" if match else "Python objects"
    return (f"refused to load {path}: it contains {what}, outside the allow-list (only tensors, containers "
            "and argparse.Namespace are accepted); loading it could run code from the file")


def read_checkpoint(path: str | Path) -> tuple[dict, str | None]:
    """Return (state_dict, constructor string or None) without executing anything from the file.

    The state dict is checked (:func:`check_weights`): str keys, dense finite floating-point tensors."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    check_archive(path)
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(_refused_pickle_message(path, exc)) from None
    except (RuntimeError, EOFError, OSError, ValueError, IndexError, KeyError, TypeError, AttributeError,
            zipfile.BadZipFile) as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        state = obj["model"]
        args = obj.get("args")
        constructor = getattr(args, "model", None) if args is not None else None
    elif isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        state, constructor = obj, None  # a bare state_dict
    else:
        raise CheckpointError(f"{path} is not a MASt3R checkpoint (expected a dict with a 'model' state_dict)")
    if constructor is not None and not isinstance(constructor, str):
        raise CheckpointError(f"{path}: args.model must be a string, got {type(constructor).__name__}")
    check_weights(path, state)
    return state, constructor


def check_weights(path: Path, state: dict) -> None:
    """CheckpointError naming the first entry that is not a dense, finite, floating-point tensor."""
    for key, value in state.items():
        where = f"{path}: state_dict entry {key!r}"
        if not isinstance(key, str):
            raise CheckpointError(f"{path}: state_dict key {key!r} is not a string")
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{where} is a {type(value).__name__}, not a tensor")
        if value.is_meta or value.layout != torch.strided or value.is_quantized:
            kind = "meta" if value.is_meta else "quantized" if value.is_quantized else str(value.layout)
            raise CheckpointError(f"{where} is a {kind} tensor; weights must be dense tensors with data")
        if value.dtype not in WEIGHT_DTYPES:
            raise CheckpointError(f"{where} has dtype {value.dtype}; weights must be float32/float16/"
                                  "bfloat16/float64")
        if not bool(torch.isfinite(value).all()):
            n_bad = int((~torch.isfinite(value)).sum())
            raise CheckpointError(f"{where} holds {n_bad} non-finite values (NaN/Inf): the outputs would be "
                                  "NaN; the file is damaged")


def check_state_dict(model: torch.nn.Module, state: dict) -> None:
    """Raise CheckpointError listing the first missing/unexpected keys and shape mismatches."""
    expected = model.state_dict()
    problems = [f"missing key {k}" for k in expected if k not in state]
    problems += [f"unexpected key {k}" for k in state if k not in expected]
    problems += [f"shape of {k}: checkpoint {tuple(state[k].shape)} vs network {tuple(v.shape)}"
                 for k, v in expected.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if problems:
        listed = "; ".join(problems[:MAX_LISTED_MISMATCHES])
        n_more = len(problems) - MAX_LISTED_MISMATCHES
        more = f"; and {n_more} more" if n_more > 0 else ""
        raise CheckpointError(f"checkpoint does not match the network ({len(problems)} problems): {listed}{more}")


def load_network(path: str | Path, config: Mast3rConfig | None = None) -> Mast3rNet:
    """Load a checkpoint into a :class:`Mast3rNet` (eval mode, CPU, float32).

    ``config``: the network configuration when the file has no ``args`` (or to override it).
    """
    state, constructor = read_checkpoint(path)
    if config is None:
        if constructor is None:
            raise CheckpointError(f"{path} has no 'args.model' constructor string (a bare state dict): "
                                  "re-save it with its args, or load it from Python with "
                                  "load_network(path, config=...)")
        try:
            config = config_from_constructor(constructor)
        except ConfigError as exc:
            raise CheckpointError(f"{path}: {exc}") from None
    with torch.device("meta"):
        model = Mast3rNet(config)
    check_state_dict(model, state)
    model.load_state_dict(state, strict=True, assign=True)
    return model.float().eval()
