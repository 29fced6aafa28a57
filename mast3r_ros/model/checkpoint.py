"""Safe loading of MASt3R checkpoints in the official file layout.

The released ``.pth`` files are pickles holding ``{'model': state_dict, 'args': Namespace(model=str)}``.
Unpickling arbitrary objects can run code, so we unpickle with ``weights_only=True`` and allow only
``argparse.Namespace``; the constructor string is parsed by :mod:`.config` without evaluation.
"""
from __future__ import annotations

import argparse
import hashlib
import pickle
from pathlib import Path

import torch

from .config import ConfigError, Mast3rConfig, config_from_constructor
from .network import Mast3rNet

MAX_LISTED_MISMATCHES = 10


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded: unsafe, unreadable, or not matching the network."""


def file_sha256(path: str | Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_checkpoint(path: str | Path) -> tuple[dict, str | None]:
    """Return (state_dict, constructor string or None) without executing anything from the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"refused to load {path}: it contains objects outside the allow-list (only tensors, "
            f"containers and argparse.Namespace are accepted): {str(exc).splitlines()[0]}") from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from None
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        state = obj["model"]
        args = obj.get("args")
        constructor = getattr(args, "model", None) if args is not None else None
    elif isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values()):
        state, constructor = obj, None  # a bare state_dict
    else:
        raise CheckpointError(f"{path} is not a MASt3R checkpoint (expected a dict with a 'model' state_dict)")
    if constructor is not None and not isinstance(constructor, str):
        raise CheckpointError(f"{path}: args.model must be a string, got {type(constructor).__name__}")
    return state, constructor


def check_state_dict(model: torch.nn.Module, state: dict) -> None:
    """Raise CheckpointError listing the first missing/unexpected keys and shape mismatches."""
    expected = model.state_dict()
    problems = [f"missing key {k}" for k in expected if k not in state]
    problems += [f"unexpected key {k}" for k in state if k not in expected]
    problems += [f"shape of {k}: checkpoint {tuple(state[k].shape)} vs network {tuple(v.shape)}"
                 for k, v in expected.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if problems:
        listed = "\n  ".join(problems[:MAX_LISTED_MISMATCHES])
        n_more = len(problems) - MAX_LISTED_MISMATCHES
        more = f"\n  ... and {n_more} more" if n_more > 0 else ""
        raise CheckpointError(f"checkpoint does not match the network ({len(problems)} problems):\n  {listed}{more}")


def load_network(path: str | Path, config: Mast3rConfig | None = None) -> Mast3rNet:
    """Load a checkpoint into a :class:`Mast3rNet` (eval mode, CPU, float32).

    ``config``: the network configuration when the file has no ``args`` (or to override it).
    """
    state, constructor = read_checkpoint(path)
    if config is None:
        if constructor is None:
            raise CheckpointError(f"{path} has no 'args.model' constructor string: name the configuration "
                                  "(e.g. config=RELEASED / --config released)")
        try:
            config = config_from_constructor(constructor)
        except ConfigError as exc:
            raise CheckpointError(f"{path}: {exc}") from None
    with torch.device("meta"):
        model = Mast3rNet(config)
    check_state_dict(model, state)
    model.load_state_dict(state, strict=True, assign=True)
    return model.float().eval()
