"""``pen``: the command line. Thin: parse, call the library, print.

Each command group is one module of this package with a ``register(commands)`` function that
adds its subcommands; a new group is one new file and one name in :data:`GROUPS`. This module
holds what every command shares: the parser, the shared options (``--port``, ``--capture``,
``--json``, declared in :mod:`.options`) and the one place where a :class:`PenError` or a
Ctrl-C becomes a one-line message and an exit status.

Nothing heavy is imported until a command runs (the protocol, numpy, bleak, rich): ``pen
--help`` and ``pen --version`` stay instant (``tools/bench_cli.py`` measures it).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import TextIO

from .options import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_USAGE, Commands, UsageError
from .output import Output

GROUPS = (
    "pen_commands",
    "scan",
    "monitor",
    "density",
    "decode",
    "logbook",
    "calibrate",
    "serve",
)
"""The command modules, in the order ``pen --help`` lists their commands."""

__all__ = ["EXIT_ERROR", "EXIT_INTERRUPTED", "EXIT_USAGE", "GROUPS", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``pen`` parser with every group's commands registered."""
    commands = Commands.create()
    for group in GROUPS:
        importlib.import_module(f"{__name__}.{group}").register(commands)
    return commands.parser


def main(argv: list[str] | None = None, *, out: TextIO | None = None) -> int:
    """Run one ``pen`` command; returns its exit status (0, or 1 with one line on stderr)."""
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        print(exc.line(), file=sys.stderr)
        return EXIT_USAGE
    output = Output(out or sys.stdout, sys.stderr, json=getattr(args, "json", False))
    _log_warnings_as_lines()
    from ..errors import PenError  # here, not at the top: it loads the protocol's schema

    try:
        status: int = args.handler(args, output)
    except PenError as exc:
        print(f"pen: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        note, status = args.interrupted(output)
        if note:
            # A new line first only on a terminal, where a progress line may be open.
            start = "\n" if _is_terminal(sys.stderr) else ""
            print(f"{start}pen: {note}", file=sys.stderr)
        return status
    except BrokenPipeError:  # `pen decode big.jsonl | head`: the reader has gone
        _quiet_stdout()
        return 0
    return status


def _log_warnings_as_lines() -> None:
    """The driver's log warnings (a link lost, a schema that differs) as ``pen: warning:``
    lines, like every other line the command prints, instead of Python's bare fallback."""
    import logging

    class WarningLines(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            print(f"pen: warning: {record.getMessage()}", file=sys.stderr, flush=True)

    logger = logging.getLogger("pendriver")
    if not any(type(h).__name__ == "WarningLines" for h in logger.handlers):
        logger.addHandler(WarningLines(logging.WARNING))


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # replaced by something without one, or closed
        return False


def _quiet_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


if __name__ == "__main__":
    raise SystemExit(main())
