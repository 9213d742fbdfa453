"""``pen decode``: a wire capture as the messages each side's decoder saw, or as pcapng for
Wireshark (``--pcapng``, :mod:`pendriver.cli.pcapng`)."""

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
        "--skip",
        type=_names,
        metavar="NAMES",
        default=frozenset(),
        help="comma-separated messages to leave out (ERROR: the frames a decoder dropped)",
    )
    p.add_argument(
        "--only",
        type=_names,
        metavar="NAMES",
        default=frozenset(),
        help="comma-separated messages to show alone (ERROR: the frames a decoder dropped)",
    )
    p.add_argument(
        "--pcapng",
        metavar="OUT",
        help="write the capture's frames to OUT as pcapng (one packet a frame, link type "
        "USER0) for Wireshark and tools/wireshark/pen_protocol.lua, instead of printing them "
        "('-': stdout)",
    )


ERROR = "ERROR"
"""The name ``--skip`` and ``--only`` give the frames a decoder dropped."""


def _names(text: str) -> frozenset[str]:
    """An argparse type: message names, any case; an unknown one is refused with the list."""
    from firmware_protocol.messages import MESSAGE_CLASSES

    known = sorted({cls.NAME for cls in MESSAGE_CLASSES.values()} | {ERROR})
    names = frozenset(n.strip().upper() for n in text.split(",") if n.strip())
    for name in sorted(names):
        if name not in known:
            raise argparse.ArgumentTypeError(
                f"unknown message {name!r} (known: {', '.join(known)})"
            )
    return names


def decode(args: argparse.Namespace, output: Output) -> int:
    from firmware_protocol import MessageReceived

    from ..captures import as_json, decode_capture, describe, read_capture
    from .files import capture_lines

    skip: frozenset[str] = args.skip
    only: frozenset[str] = args.only
    if args.pcapng is not None:
        from .pcapng import write_pcapng

        return write_pcapng(args.file, args.pcapng, output, skip=skip, only=only)
    with capture_lines(args.file) as lines:
        for entry in decode_capture(read_capture(lines, args.file, warn=output.warning)):
            event = entry.event
            name = event.message.NAME if isinstance(event, MessageReceived) else ERROR
            if not passes(name, skip, only):
                continue
            if output.json:
                output.emit_json_line(as_json(entry))
            else:
                print(describe(entry), file=output.out)
    return 0


def passes(name: str, skip: frozenset[str], only: frozenset[str]) -> bool:
    """Whether ``--skip`` and ``--only`` let a frame of message ``name`` (or ERROR) through."""
    return name not in skip and (not only or name in only)
