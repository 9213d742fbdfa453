"""The calibration table's rules (docs/PROTOCOL.md, "Calibration tables"), for both sides of the
wire: the pen that enforces and applies them, and the host that reads its NACKs and predicts
where a table drives the actuator.

The schema's prose says them (ErrorCode CALIBRATION_INVALID); here they are named once, so the
simulated firmware, the driver's calibration and the conformance checks cannot drift apart.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

from .schema import SCHEMA

NOT_STAGED = 0xFFFF
"""Detail of NACK CALIBRATION_INVALID to a COMMIT when no table is on trial under its version,
and to a CALIBRATION_READ of the trial when there is none."""
RATE_OUT_OF_BOUNDS = 0xFFFE
"""Detail of NACK CALIBRATION_INVALID to a table whose stroke-rate correction is too large."""
MAX_RATE_CORRECTION_PPM = 50_000
"""The largest stroke-rate gain correction a pen accepts (5 %): a motor further off needs
service."""
MAX_RATE_OFFSET_MHZ = 5_000
"""The largest stroke-rate offset correction a pen accepts (5 Hz)."""
MAX_TABLE_POINTS = next(
    f.max for f in SCHEMA.message("CALIBRATION_WRITE").fields if f.name == "points"
)
"""The most depth points a table holds (the schema's bound on CALIBRATION_WRITE.points)."""


def rate_correction_valid(rate_ppm: int, rate_offset_mhz: int) -> bool:
    """Whether a stroke-rate correction is within what a pen accepts."""
    return abs(rate_ppm) <= MAX_RATE_CORRECTION_PPM and abs(rate_offset_mhz) <= MAX_RATE_OFFSET_MHZ


def piecewise_linear(x: float, xs: Sequence[float], ys: Sequence[float]) -> float:
    """``y(x)`` on the polyline through (xs, ys), its end segments extended beyond the ends.

    A one-point table shifts by a constant; ``xs`` must be strictly increasing.
    """
    if len(xs) == 1:
        return float(ys[0] + x - xs[0])
    i = min(max(bisect_left(xs, x), 1), len(xs) - 1)
    x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
