"""The depth calibration procedure: sweep, fit, stage on trial, verify, and only then commit.

1. Read the table in force (as found) and hold the driver's link-lost alarm
   (:meth:`Pen.calibration_mode`: a pen moving its actuator may be quiet).
2. Sweep the set points upwards and downwards (each visit approached from its side, so the
   backlash shows as hysteresis), ``repeats`` times, one settled gauge reading a visit
   (:func:`settled_reading`).
3. Analyse (:mod:`.fit`: outliers, means, hysteresis, repeatability, fit, uncertainty) and build
   the table that sends each depth to the actuator position the fit says gives it.
4. Stage it on trial and read it back; sweep again through the corrected scale; within
   tolerance, commit and read the committed table back; otherwise discard it.

Anything that stops it (Ctrl-C, a lost link, a gauge that falls silent, a table the pen
refuses) before the commit leaves the previous calibration in force: the trial is discarded
on the way out, and if the link is gone the pen drops it at its next session (HELLO: the
driver's reconnect, or any other host), reboot or watchdog stop, never keeping it.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from firmware_protocol.calibration import MAX_TABLE_POINTS
from firmware_protocol.messages import CartridgeState

from ..errors import PenRefused
from . import fit as fitting
from . import pentable
from .ending import Ending, record_maker
from .gauges import Gauge, GaugeError
from .record import CalibrationRecord

if TYPE_CHECKING:
    from ..driver import Pen

DEFAULT_TOLERANCE_MM = 0.05
DEFAULT_POINTS = 8
DEFAULT_REPEATS = 3

Progress = Callable[[str, int, int], None]
"""``(phase, done, total)``: called after every reading (for progress bars)."""


@dataclass(frozen=True)
class DepthPlan:
    """How to calibrate: which set points, how often, how strict."""

    points: int = DEFAULT_POINTS
    """How many set points to measure (spread over the range, on the pen's step grid)."""
    repeats: int = DEFAULT_REPEATS
    tolerance_mm: float = DEFAULT_TOLERANCE_MM
    settle_readings: int = 3
    """Consecutive readings that must agree within :attr:`settle_band_mm` to count as settled."""
    settle_band_mm: float | None = None
    """Default: three gauge resolutions."""
    settle_timeout_s: float = 10.0
    table_points: int = 8
    setpoints_mm: tuple[float, ...] | None = None
    """Explicit set points instead of :attr:`points` spread over the range."""

    def __post_init__(self) -> None:
        if self.points < 2 or self.points > MAX_TABLE_POINTS:
            raise ValueError(f"points must be 2..{MAX_TABLE_POINTS}, got {self.points}")
        if self.repeats < 1:
            raise ValueError(f"repeats must be at least 1, got {self.repeats}")
        if not (0 < self.tolerance_mm <= 0.5):
            raise ValueError(f"the tolerance must be 0 < t <= 0.5 mm, got {self.tolerance_mm}")
        if self.settle_readings < 2:
            raise ValueError("settling needs at least 2 readings to compare")


def setpoints_um(depth_min_um: int, depth_max_um: int, step_um: int, count: int) -> list[int]:
    """``count`` set points on the step grid, one step in from each end of the range, so
    both ends can be approached from both sides."""
    step = max(step_um, 1)
    low, high = depth_min_um + step, depth_max_um - step
    if high <= low:
        low, high = depth_min_um, depth_max_um
    grid = list(range(low, high + 1, step))
    if len(grid) <= count:
        return grid
    picks = {grid[round(i * (len(grid) - 1) / (count - 1))] for i in range(count)}
    return sorted(picks)


async def settled_reading(
    gauge: Gauge, *, readings: int, band_mm: float, timeout_s: float
) -> float:
    """The mean of the first ``readings`` consecutive readings that agree within ``band_mm``
    (the indicator's spindle has stopped following the needle)."""
    window: list[float] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        window.append(await gauge.read_mm())
        window = window[-readings:]
        if len(window) == readings and max(window) - min(window) <= band_mm:
            return sum(window) / readings
        if loop.time() > deadline:
            shown = ", ".join(f"{v:.3f}" for v in window)
            raise GaugeError(
                f"the gauge reading did not settle within {timeout_s:g} s (last readings "
                f"{shown} mm): is the indicator touching the needles firmly, and the bench "
                "still?"
            )


async def _sweep(
    pen: Pen,
    gauge: Gauge,
    plan: DepthPlan,
    points: Sequence[int],
    table: Sequence[tuple[int, int]],
    phase: str,
    progress: Progress | None,
) -> list[fitting.Reading]:
    info = pen.device_info.raw
    band = plan.settle_band_mm if plan.settle_band_mm is not None else 3 * gauge.resolution_mm
    total = len(points) * 2 * plan.repeats
    readings: list[fitting.Reading] = []
    for repeat in range(plan.repeats):
        for direction, order, start in (
            (1, list(points), info.depth_min_um),
            (-1, list(reversed(points)), info.depth_max_um),
        ):
            await pen.set_depth(start / 1000)  # approach every point from this side
            for setpoint in order:
                await pen.set_depth(setpoint / 1000)
                value = await settled_reading(
                    gauge,
                    readings=plan.settle_readings,
                    band_mm=band,
                    timeout_s=plan.settle_timeout_s,
                )
                actuator = fitting.apply_table(table, setpoint)
                readings.append(
                    fitting.Reading(setpoint, direction, repeat + 1, actuator, value * 1000)
                )
                if progress is not None:
                    progress(phase, len(readings), total)
    return readings


async def calibrate_depth(
    pen: Pen,
    gauge: Gauge,
    *,
    plan: DepthPlan | None = None,
    operator_id: str = "",
    environment: str = "",
    progress: Progress | None = None,
) -> CalibrationRecord:
    """Calibrate ``pen``'s depth scale against ``gauge`` (see the module docstring); the record
    says how it ended (``pass``, ``fail`` or ``rejected``). Interruptions raise, with the
    previous calibration in force."""
    plan = plan or DepthPlan()
    info = pen.device_info
    raw = info.raw
    started = datetime.now(UTC)
    before = await pentable.read_table(pen)
    if plan.setpoints_mm is not None:
        points = sorted({round(v * 1000) for v in plan.setpoints_mm})
    else:
        points = setpoints_um(raw.depth_min_um, raw.depth_max_um, raw.depth_step_um, plan.points)
    tolerance_um = plan.tolerance_mm * 1000
    resolution_um = gauge.resolution_mm * 1000
    cartridge = await pen.cartridge()
    ceiling_um = (
        None if cartridge.state is CartridgeState.ABSENT else cartridge.needle_length_mm * 1000
    )

    record = record_maker(
        "depth",
        info,
        before,
        started,
        profile=(
            f"{info.model}: {info.depth_min_mm:g}-{info.depth_max_mm:g} mm in "
            f"{info.depth_step_mm:g} mm steps"
        ),
        gauge_id=gauge.gauge_id,
        gauge_resolution_mm=gauge.resolution_mm,
        operator_id=operator_id,
        environment=environment,
        tolerance=plan.tolerance_mm,
    )

    async with pen.calibration_mode():
        trial: pentable.PenTable | None = None
        try:
            found = await _sweep(pen, gauge, plan, points, before.points, "as found", progress)
            analysis = fitting.analyse(
                found, resolution_um=resolution_um, tolerance_um=tolerance_um, ceiling_um=ceiling_um
            )
            rows = _rows("as found", analysis.readings)
            fit_doc = _fit_doc(analysis.fit)
            common: dict[str, Any] = {
                "fit": fit_doc,
                "as_found_max_error": analysis.max_error_um / 1000,
                "uncertainty": analysis.uncertainty_um / 1000,
                "repeatability": analysis.repeatability_um / 1000,
                "hysteresis": analysis.max_hysteresis_um / 1000,
            }
            table = fitting.table_for(
                analysis.fit, raw.depth_min_um, raw.depth_max_um, plan.table_points
            )
            candidate = pentable.PenTable(
                pentable.next_version(before.version),
                False,
                table,
                before.rate_ppm,
                before.rate_offset_mhz,
            )
            ending = Ending(
                pen, before, record, plan.tolerance_mm, lambda v: f"{v:.3f} mm", "table"
            )
            below = next((i for i, (_d, a) in enumerate(table) if a < 0), None)
            if below is not None:
                # Outside the travel, so the pen would refuse it; but the wire cannot even
                # carry it (actuator_um is unsigned), so it is refused here in the pen's words.
                d, a = table[below]
                return ending.reject(
                    f"the correction it needs at {d / 1000:.3f} mm (drive the actuator to "
                    f"{a / 1000:.3f} mm, {a - d:+d} µm) is beyond the pen's actuator travel "
                    "(the needles stand out further than that with the actuator at its zero): "
                    "the pen needs service, not calibration",
                    rows,
                    common,
                )
            # From the WRITE's first byte the pen may hold it on trial: an interruption before
            # stage() returns (its answer or the read-back lost, a Ctrl-C) must discard it too.
            trial = candidate
            try:
                trial = await pentable.stage(pen, candidate)
            except PenRefused as exc:
                return ending.rejected(exc, candidate, rows, common)
            left = await _sweep(pen, gauge, plan, points, table, "as left", progress)
            verified = fitting.analyse(
                left, resolution_um=resolution_um, tolerance_um=tolerance_um, ceiling_um=ceiling_um
            )
            rows += _rows("as left", verified.readings)
            common["uncertainty"] = verified.uncertainty_um / 1000
            common["repeatability"] = verified.repeatability_um / 1000
            common["hysteresis"] = verified.max_hysteresis_um / 1000
            as_left = verified.max_error_um / 1000
            outcome = await ending.decide(
                trial,
                as_left=as_left,
                rows=rows,
                common=common,
                summary=f"largest error {analysis.max_error_um / 1000:.3f} mm as found, "
                f"{as_left:.3f} mm as left (tolerance ±{plan.tolerance_mm:.3f} mm)",
            )
            trial = None
            return outcome
        finally:
            if trial is not None:  # interrupted between staging and committing
                await asyncio.shield(pentable.discard_quietly(pen))


def _rows(phase: str, readings: Sequence[fitting.Reading]) -> list[dict[str, Any]]:
    return [
        {
            "phase": phase,
            "setpoint_mm": r.setpoint_um / 1000,
            "direction": "up" if r.direction > 0 else "down",
            "repeat": r.repeat,
            "actuator_mm": round(r.actuator_um / 1000, 6),
            "measured_mm": round(r.measured_um / 1000, 6),
            "error_mm": round((r.measured_um - r.setpoint_um) / 1000, 6),
            "rejected": r.rejected,
            "reason": r.reason,
        }
        for r in readings
    ]


def _fit_doc(f: fitting.Fit) -> dict[str, Any]:
    return {
        "kind": f.kind,
        "gain": f.gain,
        "offset_mm": f.offset_um / 1000,
        "knots_mm": [[a / 1000, y / 1000] for a, y in f.knots],
        "residual_sd_mm": f.residual_sd_um / 1000,
        "max_residual_mm": f.max_residual_um / 1000,
        "rule": "least squares; piecewise-linear through the set points when the line leaves "
        "a residual over half the tolerance and three repeatabilities",
        "finite": all(math.isfinite(v) for v in (f.gain, f.offset_um)),
    }
