"""Declare a node's parameters from its schema dataclass, with descriptors and validation.

Bad values at start-up stop the node with the reason; at run time ``set_parameters`` is refused
with the reason (read-only parameters by rclpy itself, ranges/choices/cross-field checks here).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, TypeVar

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult

from mast3r_ros.ros.core.params import NodeParams, ParamError

P = TypeVar("P", bound=NodeParams)


def descriptor(f: dataclasses.Field) -> ParameterDescriptor:
    meta = f.metadata
    text = meta["help"]
    if meta.get("choices"):
        text += f" (one of {list(meta['choices'])})"
    # a tri-state ('auto'/'true'/'false') also takes a ROS bool (-p NAME:=true), so its type is dynamic
    tri_state = bool(meta.get("choices")) and "true" in meta["choices"]
    d = ParameterDescriptor(description=text, read_only=not meta.get("dynamic", False), dynamic_typing=tri_state)
    lo, hi = meta.get("min"), meta.get("max")
    kind = f.type if isinstance(f.type, str) else f.type.__name__
    if lo is not None and hi is not None:
        if kind == "float":
            d.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi), step=0.0)]
        elif kind == "int":
            d.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=1)]
    return d


def declare_and_read(node, cls: type[P]) -> P:
    """Declare every schema field on ``node`` (those not declared yet: a managed node configures
    again after cleanup) and return the validated values.

    Raises:
        ParamError: a value is refused (the message names the parameter and the reason).
    """
    values = {}
    for f in dataclasses.fields(cls):
        try:
            if not node.has_parameter(f.name):
                node.declare_parameter(f.name, f.default, descriptor(f))
        except Exception as exc:  # rclpy's InvalidParameterValue/TypeException: name the parameter
            raise ParamError(f"parameter {f.name}: {exc}") from None
        values[f.name] = node.get_parameter(f.name).value
    return cls.from_dict(values)


def install_validator(node, get: Callable[[], P], apply: Callable[[P], None]) -> None:
    """Validate run-time changes against the schema; ``apply`` receives the new params. While ``get()``
    is None (a managed node not configured yet) changes are taken as they are: configure validates them."""

    def on_set(parameters) -> SetParametersResult:
        current = get()
        if current is None:
            return SetParametersResult(successful=True)
        names = set(current.specs())
        changes = {p.name: p.value for p in parameters if p.name in names}
        if not changes:
            return SetParametersResult(successful=True)
        try:
            new = current.replace(**changes)
        except ParamError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        apply(new)
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(on_set)
