"""What a digital indicator prints on its USB-serial port: one reading per line.

The common form is a number with an optional sign and an optional unit: ``+01.234 mm``,
``-0.0123in``, ``1.2345``, ``0,512 MM`` (a comma where the indicator was set up for a decimal
comma), ``+0512 um``. Leading and trailing blanks and a carriage return are ignored. Anything
else is not a reading (an indicator's banner, an error code such as ``E-01``, a line cut in
half) and is refused by name, never guessed at: a calibration written from a misread digit
moves needles.
"""

from __future__ import annotations

import math
import re

UNITS_PER_MM = {"mm": 1.0, "in": 1 / 25.4, "inch": 1 / 25.4, "um": 1000.0, "µm": 1000.0}
"""How many of each unit make a millimetre."""

_READING = re.compile(
    r"""^\s*
    (?P<sign>[+-])?\s*
    (?P<number>\d+(?:[.,]\d*)?|[.,]\d+)
    \s*(?P<unit>mm|inch|in|um|µm)?
    \s*$""",
    re.VERBOSE | re.IGNORECASE,
)


class NotAReading(ValueError):
    """A line from the gauge that holds no reading."""


def parse_reading(line: str, default_unit: str = "mm") -> float:
    """The reading on ``line`` in millimetres; the line's own unit wins over ``default_unit``
    (the unit the gauge is set to print when its lines carry none)."""
    if default_unit.lower() not in UNITS_PER_MM:
        raise ValueError(f"unknown unit {default_unit!r} (known: mm, in, um)")
    text = line.strip()
    match = _READING.match(text)
    if match is None:
        raise NotAReading(f"the gauge sent {text!r}, which is not a reading")
    value = float(match["number"].replace(",", "."))
    if match["sign"] == "-":
        value = -value
    unit = (match["unit"] or default_unit).lower()
    mm = value / UNITS_PER_MM[unit]
    if not math.isfinite(mm):
        raise NotAReading(f"the gauge sent {text!r}, which is not a finite reading")
    return mm


def format_reading(mm: float, unit: str = "mm") -> str:
    """A reading as an indicator prints it (``+1.234 mm``, ``+0.04858 in``, ``+1234 um``)."""
    key = unit.lower()
    if key not in UNITS_PER_MM:
        raise ValueError(f"unknown unit {unit!r} (known: mm, in, um)")
    value = mm * UNITS_PER_MM[key]
    digits = {"mm": 3, "in": 5, "inch": 5}.get(key, 0)
    return f"{value:+.{digits}f} {key}"
