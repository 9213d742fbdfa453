"""``pen decode``: a wire capture as the messages each side's decoder saw."""

from __future__ import annotations

import argparse

from .options import Commands
from .output import Output


def register(commands: Commands) -> None:
    p = commands.add(
        "decode",
        decode,
        parents=[commands.json],
        help="print a wire capture as decoded messages (--json: one object a line)",
    )
    p.add_argument("file", metavar="FILE", help="a capture from pen --capture or pen-sim --capture")
    p.add_argument(
        "--skip", metavar="NAMES", default="", help="comma-separated messages to leave out"
    )
    p.add_argument(
        "--only", metavar="NAMES", default="", help="comma-separated messages to show alone"
    )


def _names(text: str) -> set[str]:
    return {n.strip().upper() for n in text.split(",") if n.strip()}


def decode(args: argparse.Namespace, output: Output) -> int:
    from firmware_protocol import MessageReceived

    from ..captures import as_json, decode_capture, describe, read_capture
    from .files import capture_lines

    skip, only = _names(args.skip), _names(args.only)
    with capture_lines(args.file) as lines:
        for entry in decode_capture(read_capture(lines, args.file, warn=output.warning)):
            event = entry.event
            name = event.message.NAME if isinstance(event, MessageReceived) else "ERROR"
            if name in skip or (only and name not in only):
                continue
            if output.json:
                output.emit_json_line(as_json(entry))
            else:
                print(describe(entry), file=output.out)
    return 0
