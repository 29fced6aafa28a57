"""Described dataclass fields: a core parameter's description and constraints live on its field.

``setting(default, help, min=..., max=..., choices=...)`` is ``dataclasses.field`` with that metadata,
so the ROS layer (``ros/core/params.py``: descriptors, validation, ``config/*.yaml``, the README's
parameter reference) reads one description per parameter from the core dataclass instead of
writing it again. ROS-free: the core dataclasses use it.
"""
from __future__ import annotations

import dataclasses
from typing import Any


def setting(default: Any, help: str, *, min: float | None = None, max: float | None = None,
            choices: tuple | None = None) -> Any:
    """A dataclass field with its default, description and range/choices in ``metadata``
    (``min``/``max`` inclusive; ``choices`` lists every accepted value). The dataclass does not
    enforce them itself; the ROS schema validates against them (node, ``mast3r-ros launch``)."""
    return dataclasses.field(default=default, metadata={"help": help, "min": min, "max": max,
                                                        "choices": choices})


def field_at(cls: type, path: str) -> tuple[dataclasses.Field, Any]:
    """(the field, its default value) at the dotted ``path`` through nested dataclass fields of
    ``cls``; a nested field's value is what ``cls()`` holds there (its factory's, whose class may set
    other defaults than its own), so the field is looked up on that value's class."""
    obj: Any = cls
    value: Any = None
    for name in path.split("."):
        owner = obj if isinstance(obj, type) else type(obj)
        f = {f.name: f for f in dataclasses.fields(owner)}[name]
        if obj is cls:
            value = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        else:
            value = getattr(obj, name)
        obj = value
    return f, value
