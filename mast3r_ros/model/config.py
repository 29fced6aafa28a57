"""Network configuration, parsed from the official constructor string without evaluating it.

Released checkpoints carry ``args.model``, a Python call expression such as
``AsymmetricMASt3R(enc_embed_dim=1024, depth_mode=('exp', -inf, inf), ...)``. The official loader
passes it to ``eval``; we walk its syntax tree with :mod:`ast` and accept only the known class name
with literal keyword arguments, so a file can never make us run code.
"""
from __future__ import annotations

import ast
import math
import re
import warnings
from dataclasses import dataclass, replace


class ConfigError(ValueError):
    """A constructor string or configuration that we refuse (unknown, unsafe or unsupported)."""


@dataclass(frozen=True)
class Mast3rConfig:
    """Structure of an AsymmetricMASt3R network (defaults: the released ViT-L / ViT-B 512 model)."""

    img_size: tuple[int, int] = (512, 512)
    patch_size: int = 16
    enc_embed_dim: int = 1024
    enc_depth: int = 24
    enc_num_heads: int = 16
    dec_embed_dim: int = 768
    dec_depth: int = 12
    dec_num_heads: int = 12
    mlp_ratio: float = 4.0
    rope_freq: float = 100.0
    norm_im2_in_dec: bool = True
    desc_dim: int = 24
    two_confs: bool = True
    depth_mode: tuple = ("exp", -math.inf, math.inf)
    conf_mode: tuple = ("exp", 1.0, math.inf)
    desc_conf_mode: tuple = ("exp", 0.0, math.inf)
    desc_mode: str = "norm"
    landscape_only: bool = False

    @property
    def dpt_hooks(self) -> list[int]:
        """Indices into [encoder output, decoder block 1..D] read by the DPT head (official rule)."""
        d = self.dec_depth
        return [0, d * 2 // 4, d * 3 // 4, d]

    def validate(self) -> "Mast3rConfig":
        """ConfigError naming the first field of the wrong type or outside its range; checked before
        any layer is built, so a file cannot ask for unbounded memory (enc_depth=1000000)."""
        check_ranges(self)
        if self.enc_embed_dim % self.enc_num_heads or self.dec_embed_dim % self.dec_num_heads:
            raise ConfigError("embedding widths must be divisible by the number of heads")
        if (self.enc_embed_dim // self.enc_num_heads) % 4 or (self.dec_embed_dim // self.dec_num_heads) % 4:
            raise ConfigError("2D RoPE needs a head dimension divisible by 4")
        if self.dec_depth <= 9:
            raise ConfigError(f"dec_depth={self.dec_depth}: the catmlp+dpt head needs dec_depth > 9")
        if self.patch_size != 16:
            raise ConfigError("only 16-pixel patches are supported (as in every released MASt3R)")
        for name in ("depth_mode", "conf_mode", "desc_conf_mode"):
            mode = getattr(self, name)
            if name == "depth_mode" and mode[0] not in ("exp", "linear", "square"):
                raise ConfigError(f"{name}={mode!r} is not supported")
            if name != "depth_mode" and mode[0] not in ("exp", "sigmoid"):
                raise ConfigError(f"{name}={mode!r} is not supported")
        if self.desc_mode != "norm":
            raise ConfigError(f"desc_mode={self.desc_mode!r} is not supported (only 'norm')")
        return self


RELEASED = Mast3rConfig()

# Sane bounds (the released ViT-L/ViT-B model: widths 1024/768, depths 24/12, 16 heads, 512 px).
MAX_CONSTRUCTOR_CHARS = 10_000  # the released string has ~500 characters
MAX_PARAMETERS = 2_000_000_000  # the released model has ~690 M
_INT_RANGES = {"patch_size": (1, 64), "enc_embed_dim": (8, 4096), "enc_depth": (1, 64), "enc_num_heads": (1, 64),
               "dec_embed_dim": (8, 4096), "dec_depth": (1, 64), "dec_num_heads": (1, 64), "desc_dim": (1, 1024)}
_FLOAT_RANGES = {"mlp_ratio": (0.25, 16.0), "rope_freq": (1.0, 1e6)}
_BOOLS = ("norm_im2_in_dec", "two_confs", "landscape_only")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_ranges(cfg: "Mast3rConfig") -> None:
    """Types and ranges of every field, and the parameter count they imply (ConfigError)."""
    for name, (lo, hi) in _INT_RANGES.items():
        v = getattr(cfg, name)
        if not _is_int(v) or not lo <= v <= hi:
            raise ConfigError(f"{name}={v!r}: must be an integer in [{lo}, {hi}]")
    for name, (lo, hi) in _FLOAT_RANGES.items():
        v = getattr(cfg, name)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not lo <= v <= hi:
            raise ConfigError(f"{name}={v!r}: must be a number in [{lo}, {hi}]")
    for name in _BOOLS:
        if not isinstance(getattr(cfg, name), bool):
            raise ConfigError(f"{name}={getattr(cfg, name)!r}: must be True or False")
    size = cfg.img_size
    if not (isinstance(size, tuple) and len(size) == 2 and all(_is_int(v) and 16 <= v <= 4096 for v in size)):
        raise ConfigError(f"img_size={size!r}: must be (height, width) integers in [16, 4096]")
    for name in ("depth_mode", "conf_mode", "desc_conf_mode"):
        mode = getattr(cfg, name)
        if not (isinstance(mode, tuple) and len(mode) == 3 and isinstance(mode[0], str)
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v)
                        for v in mode[1:]) and mode[1] < mode[2]):
            raise ConfigError(f"{name}={mode!r}: must be (kind, low, high) with numbers low < high")
    if not isinstance(cfg.desc_mode, str):
        raise ConfigError(f"desc_mode={cfg.desc_mode!r}: must be a string")
    e, d, r = cfg.enc_embed_dim, cfg.dec_embed_dim, cfg.mlp_ratio
    params = cfg.enc_depth * (4 + 2 * r) * e * e + 2 * cfg.dec_depth * (8 + 2 * r) * d * d
    if params > MAX_PARAMETERS:
        raise ConfigError(f"the configuration implies ~{params / 1e9:.1f} G parameters (at most "
                          f"{MAX_PARAMETERS / 1e9:.0f} G): not a MASt3R network")

_CLASS_NAMES = ("AsymmetricMASt3R",)

# Constructor keywords whose value maps 1:1 onto a Mast3rConfig field.
_DIRECT = {
    "img_size", "enc_embed_dim", "enc_depth", "enc_num_heads", "dec_embed_dim", "dec_depth",
    "dec_num_heads", "mlp_ratio", "norm_im2_in_dec", "two_confs", "depth_mode", "conf_mode",
    "desc_conf_mode", "desc_mode", "landscape_only", "patch_size",
}
# Keywords that only matter for training; accepted and ignored.
_IGNORED = {"freeze", "mask_ratio"}


def _literal(node: ast.AST):
    """Value of a literal node: numbers, strings, booleans, None, tuples/lists, +-inf. Nothing else."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool, type(None))):
        return node.value
    if isinstance(node, ast.Name) and node.id == "inf":
        return math.inf
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _literal(node.operand)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, (ast.Tuple, ast.List)):
        return tuple(_literal(elt) for elt in node.elts)
    raise ConfigError(f"refused: non-literal value {ast.unparse(node)!r} in the constructor string")


def parse_constructor_kwargs(text: str) -> tuple[str, dict]:
    """Split ``Name(k=literal, ...)`` into the class name and its keyword arguments, safely."""
    if len(text) > MAX_CONSTRUCTOR_CHARS:
        raise ConfigError(f"refused: constructor string of {len(text)} characters (at most "
                          f"{MAX_CONSTRUCTOR_CHARS})")
    try:
        with warnings.catch_warnings():  # a hostile string must not print Python's syntax warnings
            warnings.simplefilter("ignore", SyntaxWarning)
            tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError) as exc:  # ValueError: null bytes
        raise ConfigError(f"refused: constructor string is not a call expression: "
                          f"{getattr(exc, 'msg', None) or exc}") from None
    except (RecursionError, MemoryError):
        raise ConfigError("refused: constructor string is nested too deeply") from None
    call = tree.body
    if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name):
        raise ConfigError("refused: constructor string must be a plain call such as AsymmetricMASt3R(...)")
    if call.func.id not in _CLASS_NAMES:
        raise ConfigError(f"refused: unknown model class {call.func.id!r} (expected one of {_CLASS_NAMES})")
    if call.args:
        raise ConfigError("refused: positional arguments in the constructor string")
    kwargs = {}
    for kw in call.keywords:
        if kw.arg is None:
            raise ConfigError("refused: **kwargs in the constructor string")
        try:
            kwargs[kw.arg] = _literal(kw.value)
        except RecursionError:
            raise ConfigError(f"refused: value of {kw.arg!r} is nested too deeply") from None
    return call.func.id, kwargs


def config_from_constructor(text: str) -> Mast3rConfig:
    """Build a validated :class:`Mast3rConfig` from an official constructor string."""
    if not isinstance(text, str):
        raise ConfigError(f"refused: the constructor must be a string, got {type(text).__name__}")
    _, kwargs = parse_constructor_kwargs(text)
    values: dict = {}
    for key, value in kwargs.items():
        if key in _DIRECT:
            values[key] = tuple(value) if isinstance(value, list) else value
        elif key == "pos_embed":
            match = re.fullmatch(r"RoPE(\d+(?:\.\d+)?)", str(value))
            if not match:
                raise ConfigError(f"pos_embed={value!r} is not supported (only RoPE<freq>)")
            values["rope_freq"] = float(match.group(1))
        elif key == "patch_embed_cls":
            # Both classes have the same parameters; with landscape_only=False they compute the same.
            if value not in ("ManyAR_PatchEmbed", "PatchEmbedDust3R"):
                raise ConfigError(f"patch_embed_cls={value!r} is not supported")
        elif key == "head_type":
            if value != "catmlp+dpt":
                raise ConfigError(f"head_type={value!r} is not supported (only 'catmlp+dpt')")
        elif key == "output_mode":
            match = re.fullmatch(r"pts3d\+desc(\d+)", str(value))
            if not match:
                raise ConfigError(f"output_mode={value!r} is not supported (only 'pts3d+desc<N>')")
            values["desc_dim"] = int(match.group(1))
        elif key in _IGNORED:
            continue
        else:
            raise ConfigError(f"unknown constructor keyword {key!r}")
    if _is_int(values.get("img_size")):
        values["img_size"] = (values["img_size"], values["img_size"])
    # The official loader forces landscape_only=False at inference; so do we.
    values["landscape_only"] = False
    # Keywords absent from the string take the official class defaults, which differ from RELEASED.
    cfg = replace(_OFFICIAL_DEFAULTS, **values)
    if cfg.desc_conf_mode is None:
        cfg = replace(cfg, desc_conf_mode=cfg.conf_mode)
    return cfg.validate()


# Defaults of the official class hierarchy (CroCoNet -> AsymmetricCroCo3DStereo -> AsymmetricMASt3R),
# used for keywords that a constructor string leaves out.
_OFFICIAL_DEFAULTS = Mast3rConfig(
    img_size=(224, 224), enc_embed_dim=768, enc_depth=12, enc_num_heads=12, dec_embed_dim=512,
    dec_depth=8, dec_num_heads=16, two_confs=False, desc_conf_mode=None, desc_dim=24,
)
