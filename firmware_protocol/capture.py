"""The wire-capture format: one JSON object per line, each a chunk of bytes as it crossed.

    {"t": 0.012345, "dir": "h2p", "hex": "0201010107..."}

``t`` is seconds on the recorder's clock (only differences matter), ``dir`` is ``h2p`` (host
to pen) or ``p2h`` (pen to host), ``hex`` the bytes exactly as they crossed, split wherever the
link split them. Lines are independent, so a capture cut short by a crash loses at most its
last line, and captures from the simulator and from the driver read the same way.

This module only formats and parses lines; writing and reading files is the caller's job.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

Direction = Literal["h2p", "p2h"]
DIRECTIONS: tuple[Direction, ...] = ("h2p", "p2h")


class CaptureFormatError(ValueError):
    """A line that is not a capture record."""


@dataclass(frozen=True, slots=True)
class CaptureRecord:
    t: float
    direction: Direction
    data: bytes


def format_record(t: float, direction: Direction, data: bytes) -> str:
    """One capture line, without its newline."""
    return json.dumps({"t": round(t, 6), "dir": direction, "hex": data.hex()})


def parse_record(line: str) -> CaptureRecord:
    """The record on ``line``; raises :class:`CaptureFormatError` saying what is wrong."""
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as exc:
        raise CaptureFormatError(f"not JSON ({exc.msg})") from None
    if not isinstance(raw, dict):
        raise CaptureFormatError("not a JSON object")
    direction = raw.get("dir")
    if direction not in DIRECTIONS:
        raise CaptureFormatError(f"dir must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    t = raw.get("t")
    if not isinstance(t, int | float) or isinstance(t, bool):
        raise CaptureFormatError(f"t must be a number, got {t!r}")
    try:
        data = bytes.fromhex(raw.get("hex", ""))
    except (TypeError, ValueError):
        raise CaptureFormatError("hex is not hexadecimal") from None
    return CaptureRecord(float(t), direction, data)
