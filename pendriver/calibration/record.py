"""A calibration's record: what a bench engineer files with the device history.

Plain data (``to_dict`` / ``from_dict``, JSON values only) so the logbook can chain it like any
record and a report can be redrawn from it years later: the pen, the gauge, who and when, the
raw points, the fit, as found and as left, the uncertainty and the verdict.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .pentable import PenTable

VERDICTS = ("pass", "fail", "rejected")
"""``pass``: verified within tolerance and committed. ``fail``: written on trial, verified out
of tolerance, discarded. ``rejected``: the pen cannot be corrected (or refused the table);
nothing was written."""

DEPTH_COLUMNS = (
    "phase",
    "setpoint_mm",
    "direction",
    "repeat",
    "actuator_mm",
    "measured_mm",
    "error_mm",
    "rejected",
    "reason",
)
"""One settled gauge reading a row; ``phase`` is ``as found`` or ``as left``."""
RATE_COLUMNS = (
    "phase",
    "setpoint_hz",
    "repeat",
    "window_s",
    "strokes",
    "measured_hz",
    "error_pct",
    "rejected",
    "reason",
)
"""One timed window a row: the strokes the pen counted over ``window_s`` seconds of its own
clock, so ``measured_hz = strokes / window_s``."""
RAW_COLUMNS = {"depth": DEPTH_COLUMNS, "rate": RATE_COLUMNS}
"""The raw CSV's columns, by the calibration's ``kind``."""


@dataclass(frozen=True)
class CalibrationRecord:
    calibration_id: str
    kind: str
    """``depth`` or ``rate``."""
    pen_serial: str
    pen_model: str
    firmware: str
    profile: str
    """What the pen says it is (model and its ranges), for the report's header."""
    gauge_id: str
    gauge_resolution_mm: float
    operator_id: str
    started_at: str
    ended_at: str
    environment: str
    """The engineer's notes: temperature, humidity, fixture, anything that may matter."""
    tolerance: float
    """mm for depth, fraction of the set rate for stroke rate."""
    verdict: str
    reason: str
    table_version_before: int
    table_version_after: int
    """The version in force after the calibration (the old one unless it passed)."""
    table_before: list[list[int]]
    table_after: list[list[int]]
    rate_before: list[int]
    """``[rate_ppm, rate_offset_mhz]`` in force before."""
    rate_after: list[int]
    fit: dict[str, Any]
    as_found_max_error: float
    as_left_max_error: float | None
    """``None`` when nothing was verified (rejected)."""
    uncertainty: float
    """Expanded uncertainty, k = 2 (mm, or fraction of the rate)."""
    repeatability: float
    hysteresis: float
    raw: list[dict[str, Any]] = field(default_factory=list)
    """Every reading (:data:`RAW_COLUMNS` of its ``kind``), as found and as left."""

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {', '.join(VERDICTS)}, got {self.verdict!r}")
        if self.kind not in ("depth", "rate"):
            raise ValueError(f"kind must be depth or rate, got {self.kind!r}")

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    @property
    def in_force(self) -> str:
        """The calibration version text a pass record names (``PEN-1/v3``)."""
        return f"{self.pen_serial}/v{self.table_version_after}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CalibrationRecord:
        return cls(**data)

    def raw_csv(self) -> str:
        """The raw points as CSV (one reading a row, with a header)."""
        out = io.StringIO()
        columns = RAW_COLUMNS[self.kind]
        writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in self.raw:
            writer.writerow({k: row.get(k, "") for k in columns})
        return out.getvalue()


def table_fields(table: PenTable, when: str) -> dict[str, Any]:
    """A record's fields for the table in force ``when`` (``before`` or ``after``)."""
    return {
        f"table_version_{when}": table.version,
        f"table_{when}": [list(p) for p in table.points],
        f"rate_{when}": [table.rate_ppm, table.rate_offset_mhz],
    }


def why_not_verified(
    as_left: float, uncertainty: float, tolerance: float, show: Callable[[float], str]
) -> str | None:
    """The decision rule for a verification sweep; ``None`` when it passes.

    It passes when the largest error after correction is within the tolerance *and* the
    measurement could tell: an expanded uncertainty larger than the tolerance cannot show a
    pen within it, however small the error it happened to see.
    """
    if as_left > tolerance:
        return (
            f"after correction the largest error is {show(as_left)}, beyond the "
            f"±{show(tolerance)} tolerance"
        )
    if uncertainty > tolerance:
        return (
            f"the measurement's uncertainty ({show(uncertainty)}, k = 2) is larger than the "
            f"±{show(tolerance)} tolerance, so it cannot show the pen within it (more repeats, "
            "longer windows or a finer gauge)"
        )
    return None


DECISION_RULES = {
    "depth": "Pass when the largest as-left error of the set points' means (the upward and "
    "downward approaches averaged, after the outlier rule) is within ±tolerance, and the "
    "expanded uncertainty is no larger than the tolerance (a measurement that uncertain could "
    "not show the pen within it). The uncertainty is not taken off the tolerance (no guard "
    "band).",
    "rate": "Pass when the largest as-left error of the set points' mean rates is within "
    "±tolerance of the set rate, and the expanded uncertainty is no larger than the tolerance "
    "(a measurement that uncertain could not show the pen within it). The uncertainty is not "
    "taken off the tolerance (no guard band).",
}
"""The pass/fail rule quoted on the report (ISO/IEC 17025 §7.8.6 wants it stated) in words:
:func:`why_not_verified`, which both procedures decide by, is beside it so the two change
together."""
