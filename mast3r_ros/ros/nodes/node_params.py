"""Declare a node's parameters from its schema (``ros.core.params``), with descriptors and validation.

Bad values at start-up stop the node with the reason; at run time ``set_parameters`` is refused
with the reason (read-only parameters by rclpy itself, ranges/choices/cross-field checks here).
A flat name of an earlier release (``top_k_keyframes``) is named with its new name: refused on
``set_parameters``, and at start (``-p`` / YAML) logged and ignored while the node runs on.
"""
from __future__ import annotations

from typing import Callable, TypeVar

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.exceptions import ParameterNotDeclaredException

from mast3r_ros.ros.core.params import RENAMED, NodeParams, ParamError, RosParam, renamed_reason

P = TypeVar("P", bound=NodeParams)


class RenamedParameter(ParameterNotDeclaredException):
    """What rclpy raises for an undeclared name, saying which parameter replaced it (the parameter
    services answer ``set_parameters`` with ``str()`` of this exception)."""

    def __init__(self, name: str):
        super().__init__([name])
        self.reason = renamed_reason(name)

    def __str__(self) -> str:
        return self.reason


def descriptor(s: RosParam) -> ParameterDescriptor:
    text = s.help + (f" (one of {list(s.choices)})" if s.choices else "")
    # a tri-state ('auto'/'true'/'false') also takes a ROS bool (-p NAME:=true), so its type is dynamic
    tri_state = bool(s.choices) and "true" in s.choices
    d = ParameterDescriptor(description=text, read_only=not s.dynamic, dynamic_typing=tri_state)
    if s.min is not None and s.max is not None:
        if s.kind == "float":
            d.floating_point_range = [FloatingPointRange(from_value=float(s.min), to_value=float(s.max), step=0.0)]
        elif s.kind == "int":
            d.integer_range = [IntegerRange(from_value=int(s.min), to_value=int(s.max), step=1)]
    return d


def declare_and_read(node, cls: type[P]) -> P:
    """Declare every schema parameter on ``node`` (those not declared yet: a managed node configures
    again after cleanup) and return the validated values (old flat names: :func:`renamed_overrides`).

    Raises:
        ParamError: a value is refused (the message names the parameter and the reason).
    """
    defaults = cls()
    values = {}
    for name, s in cls.specs().items():
        try:
            if not node.has_parameter(name):
                node.declare_parameter(name, defaults.value(s), descriptor(s))
        except Exception as exc:  # rclpy's InvalidParameterValue/TypeException: name the parameter
            raise ParamError(f"parameter {name}: {exc}") from None
        values[name] = node.get_parameter(name).value
    return cls.from_dict(values)


def renamed_overrides(node) -> list[str]:
    """One line for each old flat name given at start (``-p`` / ``--params-file``), each logged as an
    error: the node runs on without it. rclpy keeps a node's start-up overrides in the Node base's
    ``_parameter_overrides`` (read here, never written), and has no public accessor for them."""
    reasons = [f"{renamed_reason(n)}; the old name is ignored" for n in node._parameter_overrides if n in RENAMED]
    for reason in reasons:
        node.get_logger().error(reason)
    return reasons


def install_validator(node, get: Callable[[], P], apply: Callable[[P], None]) -> None:
    """Validate run-time changes against the schema; ``apply`` receives the new params. While ``get()``
    is None (a managed node not configured yet) changes are taken as they are: configure validates them.
    An old flat name is refused before rclpy's own undeclared-name check, naming the new name."""

    def refuse_renamed(parameters):
        for p in parameters:
            if p.name in RENAMED and not node.has_parameter(p.name):
                raise RenamedParameter(p.name)
        return parameters

    def on_set(parameters) -> SetParametersResult:
        current = get()
        if current is None:
            return SetParametersResult(successful=True)
        names = set(current.specs())
        changes = {p.name: p.value for p in parameters if p.name in names}
        if not changes:
            return SetParametersResult(successful=True)
        try:
            new = current.replace(changes)
        except ParamError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        apply(new)
        return SetParametersResult(successful=True)

    node.add_pre_set_parameters_callback(refuse_renamed)
    node.add_on_set_parameters_callback(on_set)
