"""A calibration record's raw rows, read back as numbers, for its plots and its report.

The rows are plain JSON (or came back from the CSV, where every value is text), and their
columns differ by kind (:data:`~.record.RAW_COLUMNS`); this is the one place that knows how to
turn either into set point / measured / error in the units the report prints (mm for depth,
Hz and % for stroke rate), so the pictures and the tables can never disagree about a reading.

The per-set-point means follow :func:`.fit.summarise` (depth: the mean of the upward and the
downward means, the backlash-free depth the record's maximum error is taken over), so a
summary table recomputed here matches the figures on the record.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .record import CalibrationRecord

PHASES = ("as found", "as left")


@dataclass(frozen=True, slots=True)
class Row:
    """One reading, in report units: mm for depth; Hz (set, measured) and % (error) for rate."""

    phase: str
    setpoint: float
    measured: float
    error: float
    """measured − set, in mm (depth) or % of the set rate (rate)."""
    direction: int
    """+1 approached from below, −1 from above, 0 when the kind has no direction (rate)."""
    repeat: int
    rejected: bool
    reason: str


@dataclass(frozen=True, slots=True)
class PointSummary:
    """One set point of one phase, as a bench engineer checks it against the tolerance."""

    phase: str
    setpoint: float
    mean: float
    """Depth: the mean of the up and the down means; rate: the mean of the windows."""
    error: float
    """``mean - setpoint`` (mm), or the same as % of the set rate."""
    up_mean: float | None
    down_mean: float | None
    hysteresis: float
    """Up mean less down mean (mm; 0 when one direction, or for rate)."""
    spread: float
    """Largest less smallest accepted reading (mm or Hz)."""
    kept: int
    rejected: int
    within: bool
    """``|error| <= tolerance`` (the tolerance in the error's units)."""


def flag(value: Any) -> bool:
    """A ``rejected`` cell as a bool: JSON gives a bool, the CSV the text ``True``/``False``."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def rows(record: CalibrationRecord, phase: str | None = None) -> list[Row]:
    """The record's readings (of ``phase`` only, if given), in report units."""
    out: list[Row] = []
    for raw in record.raw:
        if phase is not None and raw.get("phase") != phase:
            continue
        if record.kind == "depth":
            setpoint = _num(raw.get("setpoint_mm"))
            measured = _num(raw.get("measured_mm"))
            error = _num(raw.get("error_mm", measured - setpoint))
            direction = {"up": 1, "down": -1}.get(str(raw.get("direction", "")), 0)
        else:
            setpoint = _num(raw.get("setpoint_hz"))
            measured = _num(raw.get("measured_hz"))
            fallback = 100 * (measured - setpoint) / setpoint if setpoint else math.nan
            error = _num(raw.get("error_pct", fallback))
            direction = 0
        repeat = raw.get("repeat", 0)
        out.append(
            Row(
                phase=str(raw.get("phase", "")),
                setpoint=setpoint,
                measured=measured,
                error=error,
                direction=direction,
                repeat=int(_num(repeat)) if math.isfinite(_num(repeat)) else 0,
                rejected=flag(raw.get("rejected", False)),
                reason=str(raw.get("reason", "") or ""),
            )
        )
    return out


def tolerance_in_error_units(record: CalibrationRecord) -> float:
    """The tolerance as the errors are printed: mm for depth, % for rate (stored as a
    fraction)."""
    return record.tolerance if record.kind == "depth" else 100 * record.tolerance


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def summarise(
    record: CalibrationRecord, readings: Iterable[Row] | None = None
) -> list[PointSummary]:
    """Per phase and set point (in sweep order: as found first, set points increasing)."""
    groups: dict[tuple[str, float], list[Row]] = {}
    for r in rows(record) if readings is None else readings:
        groups.setdefault((r.phase, r.setpoint), []).append(r)
    order = {p: i for i, p in enumerate(PHASES)}
    tol = tolerance_in_error_units(record)
    out: list[PointSummary] = []
    for (phase, setpoint), group in sorted(
        groups.items(), key=lambda kv: (order.get(kv[0][0], len(order)), kv[0][0], kv[0][1])
    ):
        kept = [r for r in group if not r.rejected]
        if not kept:
            continue
        by_dir: dict[int, list[float]] = {}
        for r in kept:
            by_dir.setdefault(r.direction, []).append(r.measured)
        means = {d: _mean(v) for d, v in by_dir.items()}
        mean = _mean(list(means.values()))
        if record.kind == "depth":
            error = mean - setpoint
        else:
            error = 100 * (mean - setpoint) / setpoint if setpoint else math.nan
        up, down = means.get(1), means.get(-1)
        values = [r.measured for r in kept]
        out.append(
            PointSummary(
                phase=phase,
                setpoint=setpoint,
                mean=mean,
                error=error,
                up_mean=up,
                down_mean=down,
                hysteresis=up - down if up is not None and down is not None else 0.0,
                spread=max(values) - min(values),
                kept=len(kept),
                rejected=len(group) - len(kept),
                # a hair of slack: a mean exactly on the limit must not flip on rounding
                within=abs(error) <= tol * (1 + 1e-9),
            )
        )
    return out
