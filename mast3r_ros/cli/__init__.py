"""The `mast3r-ros` command line: one sub-command per module listed in COMMANDS.

Each command module exposes ``NAME`` (the sub-command, may contain a space for nested
commands such as ``map build``), ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# Modules under mast3r_ros.cli, imported lazily so `mast3r-ros --help` stays fast.
COMMANDS = [
    "infer_pair",
    "demo_pair",
    "map_build", "localize", "evaluate", "relocalize",
    "evaluate_trajectory",
    "launch", "replay",
    "make_bag", "play",
]


def _build_parser() -> tuple[argparse.ArgumentParser, dict]:
    parser = argparse.ArgumentParser(prog="mast3r-ros", description="MASt3R localization and mapping tools")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    groups: dict[str, argparse._SubParsersAction] = {}
    handlers = {}
    for mod_name in COMMANDS:
        mod = importlib.import_module(f"mast3r_ros.cli.{mod_name}")
        words = mod.NAME.split()
        target = sub
        if len(words) == 2:  # nested command, e.g. "map build"
            if words[0] not in groups:
                grp = sub.add_parser(words[0], help=f"{words[0]} commands")
                groups[words[0]] = grp.add_subparsers(dest=f"{words[0]}_command", metavar="COMMAND")
            target = groups[words[0]]
        p = target.add_parser(words[-1], help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_handler=mod.run)
        handlers[mod.NAME] = mod.run
    return parser, handlers


def main(argv: list[str] | None = None) -> int:
    parser, _ = _build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "_handler", None)
    if handler is None:
        parser.print_help()
        return 2
    return int(handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
