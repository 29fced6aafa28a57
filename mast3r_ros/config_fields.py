"""Described dataclass fields: one vocabulary of settings for the core, the CLI and ROS.

``setting(default, help, min=..., max=..., choices=...)`` is ``dataclasses.field`` with that metadata.
A component's dataclass is its parameter set; :func:`settings` lists every described field reachable
from a root dataclass under its dotted name (``<root>.<field>.<field>``: ``localizer.pnp.max_reproj_px``,
nested exactly as the dataclasses nest), so the CLI's ``--set NAME=VALUE`` (:func:`apply_sets`) and the
ROS parameters (``ros/core/params.py``: descriptors, validation, ``config/*.yaml``, the README's
parameter table) fill the same objects with the same names, defaults, descriptions and ranges.
A field whose type admits None takes '' for it (ROS parameters and the command line have no None).
:class:`SettingSet` is a dataclass of flat described fields and such sections, filled and validated by
name (the ROS node parameter schemas build on it); :func:`nested_yaml` / :func:`flatten_nested` write
and read the dotted names as nested YAML. ROS-free: the core dataclasses use it.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import math
from typing import Any, ClassVar, TypeVar

KINDS = {"bool": bool, "int": int, "float": float, "str": str}
S = TypeVar("S", bound="SettingSet")


def setting(default: Any, help: str, *, min: float | None = None, max: float | None = None,
            choices: tuple | None = None, **extra: Any) -> Any:
    """A dataclass field with its default, description and range/choices in ``metadata``
    (``min``/``max`` inclusive; ``choices`` lists every accepted value; ``extra``: what a user of the
    schema adds, e.g. ROS's ``dynamic``). The dataclass does not enforce them itself;
    :func:`check_value` does (CLI ``--set``, the ROS schema)."""
    return dataclasses.field(default=default, metadata={"help": help, "min": min, "max": max,
                                                        "choices": choices, **extra})


def field_at(cls: type, path: str) -> tuple[dataclasses.Field, Any]:
    """(the field, its default value) at the dotted ``path`` through nested dataclass fields of
    ``cls``; a nested field's value is what ``cls()`` holds there (its factory's, whose class may set
    other defaults than its own), so the field is looked up on that value's class."""
    obj: Any = cls()
    f = None
    for name in path.split("."):
        f = {f.name: f for f in dataclasses.fields(obj)}[name]
        obj = getattr(obj, name)
    return f, obj


@dataclasses.dataclass(frozen=True)
class Setting:
    """One described field under its dotted ``name``; ``section``: the root it belongs to ('' for a
    flat field of a :class:`SettingSet`); ``path``: the field path inside the root dataclass;
    ``default``: the root's default instance's value there (the same object); ``optional``: the type
    admits None ('' stands for it)."""
    name: str
    path: str
    kind: str                      # 'bool' | 'int' | 'float' | 'str'
    default: Any
    help: str
    min: float | None = None
    max: float | None = None
    choices: tuple | None = None
    optional: bool = False
    section: str = ""

    def encode(self, value: Any) -> Any:
        """The value as ROS / the command line hold it (None -> '')."""
        return "" if value is None and self.optional else value

    def decode(self, value: Any) -> Any:
        """The core value of an encoded one ('' -> None for an optional field)."""
        return None if self.optional and value == "" else value


def _kind(annotation: Any) -> tuple[str, bool]:
    """('bool'|'int'|'float'|'str', admits None) of a field annotation ('str | Path', 'str | None')."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    parts = [p.strip() for p in text.split("|")]
    kind = next((p for p in parts if p in KINDS), "str" if "Path" in parts else "")
    return kind, "None" in parts


def settings(root: type, prefix: str) -> list[Setting]:
    """Every described field (``setting``) reachable from ``root()`` through nested dataclass values,
    named ``prefix.path``, in field order."""
    out: list[Setting] = []

    def walk(obj: Any, path: str) -> None:
        for f in dataclasses.fields(obj):
            value, sub = getattr(obj, f.name), f"{path}{f.name}"
            if dataclasses.is_dataclass(value):
                walk(value, sub + ".")
            elif "help" in f.metadata:
                kind, optional = _kind(f.type)
                meta = f.metadata
                choices = meta["choices"] and tuple(dict.fromkeys("" if c is None else c for c in meta["choices"]))
                out.append(Setting(f"{prefix}.{sub}", sub, kind, value, meta["help"], meta["min"], meta["max"],
                                   choices, optional, prefix))

    walk(root(), "")
    return out


def check_value(name: str, kind: str, value: Any, *, min: float | None = None, max: float | None = None,
                choices: tuple | None = None) -> Any:
    """``value`` as ``kind`` (an int is a float; a tri-state string takes a bool) within min/max/choices;
    ValueError with a one-line reason naming ``name`` otherwise."""
    if kind == "bool" and not isinstance(value, bool):
        raise ValueError(f"{name} must be a bool, got {value!r}")
    if kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{name} must be a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value!r}")
    if kind == "str":
        if isinstance(value, bool) and choices and "true" in choices:
            value = "true" if value else "false"  # tri-state: YAML/ROS give true/false as bools
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a string, got {value!r}")
    if min is not None and value < min:
        raise ValueError(f"{name} must be >= {min}, got {value}")
    if max is not None and value > max:
        raise ValueError(f"{name} must be <= {max}, got {value}")
    if choices is not None and value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def check_setting(s: Setting, value: Any) -> Any:
    """:func:`check_value` with the setting's own type and constraints."""
    return check_value(s.name, s.kind, value, min=s.min, max=s.max, choices=s.choices)


def parse_text(s: Setting, text: str) -> Any:
    """The value of a command-line word for ``s`` (true/false, an integer, a number or the text),
    checked; ValueError naming the setting otherwise."""
    word = text.strip()
    if s.kind == "bool":
        value: Any = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}.get(word.lower(),
                                                                                                        text)
    elif s.kind in ("int", "float"):
        try:
            value = int(word) if s.kind == "int" else float(word)
        except ValueError:
            value = text
    else:
        value = text
    return check_setting(s, value)


def with_value(obj: Any, path: str, value: Any) -> Any:
    """A copy of the dataclass ``obj`` whose field at the dotted ``path`` is ``value`` (nested
    dataclasses replaced along the path; ``obj`` itself is unchanged)."""
    head, _, rest = path.partition(".")
    return dataclasses.replace(obj, **{head: with_value(getattr(obj, head), rest, value) if rest else value})


def unknown_name(name: str, known: list[str], what: str = "setting") -> str:
    """The one-line refusal of an unknown name, with the closest known one."""
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f"unknown {what} {name!r}" + (f" (did you mean {close[0]!r}?)" if close else "")


def apply_sets(configs: dict[str, Any], items: list[str]) -> dict[str, Any]:
    """``configs`` (root name -> dataclass instance) with each ``NAME=VALUE`` of ``items`` applied,
    ``NAME`` a dotted setting name under one of the roots (``localizer.retrieval.top_k=3``).

    Raises:
        ValueError: one line naming the item: no '=', an unknown name (with the closest known
            one), or a value of the wrong type / out of range.
    """
    table = {s.name: s for root, obj in configs.items() for s in settings(type(obj), root)}
    out = dict(configs)
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep:
            raise ValueError(f"--set {item!r} must look like NAME=VALUE")
        if name not in table:
            raise ValueError(f"--set {item!r}: {unknown_name(name, sorted(table))}")
        s = table[name]
        try:
            value = s.decode(parse_text(s, text))
        except ValueError as exc:
            raise ValueError(f"--set {item!r}: {exc}") from None
        out[s.section] = with_value(out[s.section], s.path, value)
    return out


def section(cls: type, only: tuple[str, ...] | None = None, **extra: Any) -> Any:
    """A :class:`SettingSet` field holding a component's dataclass (default ``cls()``), whose described
    fields are settings named ``<this field>.<path>`` (``only``: just these field paths, where the user of
    the section reads no others; the rest keep their defaults); ``extra``: what a user of the schema adds."""
    return dataclasses.field(default_factory=cls, metadata={"section": cls, "only": only, **extra})


class SettingSet:
    """Base of a dataclass of flat described fields (:func:`setting`) and sections (:func:`section`),
    filled and validated by setting name (the ROS node parameter schemas, ``ros/core/params.py``).
    Subclasses may turn each field's settings into richer ones (:meth:`_field_settings`), refuse
    more names (:meth:`_refused_names`) and add cross-field checks (:meth:`_cross_checks`)."""

    Error: ClassVar[type[ValueError]] = ValueError

    @classmethod
    def _field_settings(cls, f: dataclasses.Field) -> list[Setting]:
        if "section" in f.metadata:
            only = f.metadata["only"]
            return [s for s in settings(f.metadata["section"], f.name) if only is None or s.path in only]
        m = f.metadata
        return [Setting(f.name, f.name, _kind(f.type)[0], f.default, m["help"], m["min"], m["max"], m["choices"])]

    @classmethod
    def specs(cls) -> dict[str, Setting]:
        """Every setting by name: flat fields as they are, each section's fields dotted, in field order."""
        return {s.name: s for f in dataclasses.fields(cls) for s in cls._field_settings(f)}

    @classmethod
    def _refused_names(cls, names: list[str], specs: dict[str, Setting], strict: bool) -> list[str]:
        """Reasons to refuse some of ``names`` (unknown ones when ``strict``)."""
        return [unknown_name(n, sorted(specs), "parameter") for n in sorted(set(names) - set(specs))] if strict else []

    @classmethod
    def from_dict(cls: type[S], values: dict[str, Any], strict: bool = True) -> S:
        """Build and validate from encoded values by (dotted) name; raises ``cls.Error`` listing every
        reason (unknown names when ``strict``, types, ranges, cross-field checks)."""
        specs = cls.specs()
        reasons = cls._refused_names(list(values), specs, strict)
        kwargs: dict[str, Any] = {}
        for name, value in values.items():
            if name not in specs:
                continue
            s = specs[name]
            try:
                value = s.decode(check_setting(s, value))
            except ValueError as exc:
                reasons.append(str(exc))
                continue
            if s.section:
                sec = kwargs.get(s.section) or cls.__dataclass_fields__[s.section].default_factory()
                kwargs[s.section] = with_value(sec, s.path, value)
            else:
                kwargs[name] = value
        if reasons:
            raise cls.Error("; ".join(reasons))
        obj = cls(**kwargs)
        obj.validate()
        return obj

    def value(self, spec: Setting) -> Any:
        """The encoded value of one setting of this object."""
        holder = getattr(self, spec.section) if spec.section else self
        return spec.encode(functools.reduce(getattr, spec.path.split("."), holder))

    def to_dict(self) -> dict[str, Any]:
        """{name: encoded value} of every setting."""
        return {name: self.value(s) for name, s in self.specs().items()}

    def replace(self: S, changes: dict[str, Any] | None = None, **flat: Any) -> S:
        """A validated copy with some values changed by name (dotted names go in ``changes``)."""
        return type(self).from_dict({**self.to_dict(), **(changes or {}), **flat})

    def validate(self) -> None:
        """Cross-field checks; raises ``Error`` naming every problem."""
        reasons = self._cross_checks()
        if reasons:
            raise self.Error("; ".join(reasons))

    def _cross_checks(self) -> list[str]:
        return []


def nested_yaml(entries: list[tuple[str, str, str]], indent: int = 0) -> list[str]:
    """YAML lines of (dotted name, YAML value, comment) entries, dotted names nested as mappings
    (``a.b: 1`` -> ``a:`` / ``  b: 1``); entries of one parent must be consecutive."""
    lines: list[str] = []
    open_path: list[str] = []
    for name, value, comment in entries:
        *parents, leaf = name.split(".")
        common = 0
        while common < min(len(parents), len(open_path)) and parents[common] == open_path[common]:
            common += 1
        lines += [f"{' ' * indent}{'  ' * i}{parents[i]}:" for i in range(common, len(parents))]
        open_path = parents
        lines.append(f"{' ' * indent}{'  ' * len(parents)}{leaf}: {value}" + (f"  # {comment}" if comment else ""))
    return lines


def flatten_nested(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted names (``{a: {b: 1}}`` -> ``{'a.b': 1}``), as ROS 2 reads YAML."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten_nested(value, name + "."))
        else:
            out[name] = value
    return out
