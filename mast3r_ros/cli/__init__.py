"""The `mast3r-ros` command line: one sub-command per module listed in COMMANDS.

Each command module exposes ``NAME`` (the sub-command, may contain a space for nested
commands such as ``map build``), ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``;
:mod:`~mast3r_ros.cli.common` holds what several commands share (front-end/model flags, ``--set``,
output checks); ``python -m mast3r_ros.cli`` runs :func:`main`.
"""
from __future__ import annotations

import argparse
import importlib
import sys

__all__ = ["COMMANDS", "main"]

# Modules under mast3r_ros.cli, imported lazily so `mast3r-ros --help` stays fast.
COMMANDS = [
    "infer_pair",
    "demo_pair",
    "map_build", "map_check", "localize", "evaluate", "relocalize",
    "evaluate_trajectory",
    "launch", "replay",
    "make_bag", "play",
]


def _build_parser() -> tuple[argparse.ArgumentParser, dict]:
    parser = argparse.ArgumentParser(prog="mast3r-ros", description="MASt3R localization and mapping tools")
    parser.add_argument("--debug", action="store_true",
                        help="show the Python stack of an error (anywhere on the command line)")
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
        p.set_defaults(_handler=mod.run, _name=mod.NAME)
        handlers[mod.NAME] = mod.run
    return parser, handlers


def main(argv: list[str] | None = None) -> int:
    """Run one command. Every error is one line ``mast3r-ros <command>: error: ...`` on stderr with exit
    code 2 and no traceback; ``--debug`` (anywhere on the line) shows the stack instead."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    parser, _ = _build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "_handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return int(handler(args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - the one place that turns any failure into a clear line
        if debug:
            raise
        print(f"{parser.prog} {args._name}: error: {error_line(exc)}", file=sys.stderr)
        return 2


def error_line(exc: BaseException) -> str:
    """One line for an exception: the message of our own errors (ValueError family, OSError), the type
    too for anything unexpected (with a hint at ``--debug``)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, OSError) and exc.filename is not None and str(exc.filename) not in text:
        text = f"{text}: {exc.filename}"
    if isinstance(exc, MemoryError):
        return "out of memory (the input asks for more memory than this machine has)"
    if isinstance(exc, (ValueError, OSError, NotImplementedError, TimeoutError)):
        return text
    return f"{type(exc).__name__}: {text} (unexpected; run with --debug for the stack)"
