"""mast3r_ros.localization.frontends (ROS-free core): the front-ends and the factory that picks one by name.

Modules
-------
* :mod:`~mast3r_ros.localization.frontends.base` - the :class:`FrontEnd` protocol, QueryFrame, Correspondences.
* :mod:`~mast3r_ros.localization.frontends.classical` - SIFT + sensor depth (RGB-D maps).
* :mod:`~mast3r_ros.localization.frontends.mast3r` - MASt3R dense matching + predicted pointmaps.

The factory :func:`make_frontend` lives here, above its products, so that no front-end imports it back;
each product is imported only when asked for (the MASt3R one loads torch). A new front-end is one new
module plus one branch here.
"""
from __future__ import annotations

from typing import Any

from mast3r_ros.localization.frontends.base import Correspondences, FrontEnd, FrontEndError, QueryFrame

__all__ = ["Correspondences", "FrontEnd", "FrontEndError", "QueryFrame", "make_frontend"]


def make_frontend(name: str, config: Any = None) -> FrontEnd:
    """Build a front-end by name.

    Args:
        name: 'classical' (config: ``ClassicalConfig``) or 'mast3r' (config:
            ``Mast3rFrontEndConfig``, which must name a checkpoint).
    Raises:
        FrontEndError: unknown name, or the mast3r front-end without a checkpoint.
    """
    key = name.strip().lower()
    if key == "classical":
        from mast3r_ros.localization.frontends.classical import ClassicalConfig, ClassicalFrontEnd

        return ClassicalFrontEnd(config if config is not None else ClassicalConfig())
    if key == "mast3r":
        from mast3r_ros.localization.frontends.mast3r import Mast3rFrontEnd, Mast3rFrontEndConfig

        return Mast3rFrontEnd(config if config is not None else Mast3rFrontEndConfig())
    raise FrontEndError(f"unknown front-end {name!r}; choose 'classical' or 'mast3r'")
