"""Where a command prints, and how: rich on a terminal, plain text on a pipe, JSON on request.

A command prints its data to ``out`` (stdout), and its notices and errors to ``err`` (stderr).
With ``--json`` stdout carries one JSON document alone (``decode``: one object a line), and
whatever a person would read (progress, warnings) moves to stderr, so ``pen run --json |
jq`` works. Colour only on a terminal and never with ``NO_COLOR`` set (https://no-color.org):
a pipe, a file or ``NO_COLOR`` get text without a single escape code.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, TextIO

from ..jsondata import jsonable

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

PIPE_WIDTH = 160
"""Columns a table may take when the output is not a terminal (no wrapping in a log)."""


def is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False


def make_console(stream: TextIO) -> Console:
    """A rich console for ``stream``: styled on a terminal, plain text anywhere else."""
    from rich.console import Console

    terminal = is_terminal(stream)
    return Console(
        file=stream,
        force_terminal=terminal,
        color_system="auto" if terminal and "NO_COLOR" not in os.environ else None,
        width=None if terminal else PIPE_WIDTH,
        highlight=False,
        emoji=False,
        markup=False,
        soft_wrap=False,
    )


class Output:
    """One command's outputs: its data, its human-readable text, its notices."""

    def __init__(self, out: TextIO, err: TextIO, *, json: bool = False) -> None:
        self.out = out
        self.err = err
        self.json = json
        self.motor_started = False
        """Set once a command has sent START (what a Ctrl-C note must say)."""
        self.terminated = False
        """Set when SIGTERM, not Ctrl-C, ended the command (exit status 143)."""
        self.motor_stop: str | None = None
        """After a pass: ``""`` when the pen confirmed its motor stopped, otherwise why that
        could not be confirmed; ``None`` while no pass has ended."""
        self.interrupt_note: str | None = None
        """What a Ctrl-C must say, set by a command that knows (``pen calibrate``: which
        calibration is in force)."""
        self._consoles: dict[int, Console] = {}

    @property
    def human(self) -> TextIO:
        """Where text for a person goes: stdout, or stderr when stdout carries JSON."""
        return self.err if self.json else self.out

    def console(self, stream: TextIO | None = None) -> Console:
        """The rich console for ``stream`` (default: :attr:`human`), made once."""
        stream = stream or self.human
        console = self._consoles.get(id(stream))
        if console is None:
            console = self._consoles[id(stream)] = make_console(stream)
        return console

    def say(self, text: str = "") -> None:
        """A line for a person (plain text, no markup)."""
        print(text, file=self.human, flush=True)

    def notice(self, text: str) -> None:
        """A one-line notice on stderr, as ``pen: ...``."""
        print(f"pen: {text}", file=self.err, flush=True)

    def warning(self, text: str) -> None:
        """A one-line warning on stderr, as ``pen: warning: ...``."""
        self.notice(f"warning: {text}")

    def emit_json(self, data: object) -> None:
        """The command's one JSON document on stdout."""
        print(json.dumps(jsonable(data), indent=2, ensure_ascii=False), file=self.out, flush=True)

    def emit_json_line(self, data: object) -> None:
        """One JSON object on one line (``pen decode --json``)."""
        print(json.dumps(jsonable(data), ensure_ascii=False), file=self.out)

    def table(self, table: Table) -> None:
        """A table on stdout; on a pipe its lines lose the padding rich adds at their ends."""
        console = self.console(self.out)
        if console.is_terminal:
            console.print(table)
            return
        with console.capture() as captured:
            console.print(table)
        for line in captured.get().splitlines():
            print(line.rstrip(), file=self.out)


def fields_table(rows: Iterable[tuple[str, str]]) -> Table:
    """A label / value table without borders (``pen info``, ``pen status``)."""
    from rich.table import Table

    table = Table(box=None, show_header=False, pad_edge=False, padding=(0, 2, 0, 0))
    table.add_column(style="dim", no_wrap=True)
    table.add_column(style="bold")
    for label, value in rows:
        table.add_row(label, value)
    return table


def rows_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> Table:
    """A table with a bold header row and no borders (``pen scan``)."""
    from rich.table import Table

    table = Table(box=None, pad_edge=False, padding=(0, 2, 0, 0), header_style="bold")
    for name in header:
        table.add_column(name, no_wrap=True)
    for row in rows:
        table.add_row(*row)
    return table
