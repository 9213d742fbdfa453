"""The stroke-rate calibration: count strokes over timed windows, fit, stage, verify, commit.

The pen drives its motor open loop: for a set rate ``s`` it drives at
``d = s·(1 + ppm/10⁶) + offset_mHz/1000`` (docs/PROTOCOL.md, "Calibration tables"), and a real
motor then strokes at ``g·d + o`` for its own ``g`` and ``o``. The reference is the pen's own
stroke counter and clock: each window is the strokes the telemetry counts between two samples
``window_s`` of the pen's time apart, so the measured rate is exact to one stroke per window
(the clock's own error, a crystal's tens of ppm, is far below the 1 % aimed at).

1. Hold the link-lost alarm (:meth:`Pen.calibration_mode`), set the shallowest depth, start
   the motor (the needles stroke in the air: a test cartridge is fitted and is then used, as
   every cartridge that has stroked is), telemetry at :attr:`RatePlan.telemetry_hz`.
2. At each set point, ``repeats`` windows after ``settle_s`` of spin-up: the as-found rates.
3. Fit ``actual = g·d + o`` by least squares on the drive ``d`` the correction in force gave
   (so it works whatever was in force), and invert it: ``ppm = (1/g − 1)·10⁶``,
   ``offset = −o/g``; a pen with one rate (fixed-rate) gets the gain only.
4. Stop the motor (a pen takes a table only while idle), stage the new correction on trial,
   keeping the depth table, read it back, start and measure again; within tolerance at every
   set point, commit and read back; otherwise discard.

The motor is stopped, and the telemetry rate and the rate set point put back, however it
ends; anything before the commit leaves the previous calibration in force (:mod:`.pentable`).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import PenError, PenRefused
from ..limits import rate_mhz
from ..models import Status, TelemetrySample
from . import pentable
from .depth import Progress
from .ending import Ending, record_maker
from .record import CalibrationRecord

if TYPE_CHECKING:
    from ..driver import Pen
    from ..events import Subscription

DEFAULT_TOLERANCE = 0.01
"""1 % of the set rate."""
STROKE_COUNT_MODULUS = 1 << 32
"""TELEMETRY.stroke_count is a u32 that wraps."""


class RateError(PenError):
    """The rate could not be measured (no telemetry, the motor not turning)."""


@dataclass(frozen=True)
class RatePlan:
    """How to calibrate the stroke rate."""

    points: int = 5
    """Set points spread over the pen's range (one for a fixed-rate pen)."""
    repeats: int = 2
    window_s: float = 10.0
    """Pen time per window: at 50 Hz, 500 strokes, so one stroke is 0.2 % of the rate."""
    settle_s: float = 1.0
    """Spin-up time after each new set point before a window starts (the simulated motor
    settles in a few tens of ms; a real one in a few hundred)."""
    tolerance: float = DEFAULT_TOLERANCE
    telemetry_hz: int = 20
    setpoints_hz: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.points < 1 or self.points > 16:
            raise ValueError(f"points must be 1..16, got {self.points}")
        if self.repeats < 1:
            raise ValueError(f"repeats must be at least 1, got {self.repeats}")
        if not (1.0 <= self.window_s <= 600.0):
            raise ValueError(f"the window must be 1-600 s, got {self.window_s:g}")
        if not (0.0 <= self.settle_s <= 60.0):
            raise ValueError(f"the settling time must be 0-60 s, got {self.settle_s:g}")
        if not (0 < self.tolerance <= 0.1):
            raise ValueError(f"the tolerance must be 0 < t <= 0.1 (10 %), got {self.tolerance}")


@dataclass(frozen=True, slots=True)
class Window:
    """One timed window at one set point."""

    setpoint_hz: float
    repeat: int
    drive_hz: float
    """What the correction in force drove the motor at for this set point."""
    strokes: int
    span_s: float

    @property
    def measured_hz(self) -> float:
        return self.strokes / self.span_s

    @property
    def error(self) -> float:
        """Relative error, a fraction of the set rate."""
        return self.measured_hz / self.setpoint_hz - 1


@dataclass(frozen=True, slots=True)
class RateAnalysis:
    gain: float
    offset_hz: float
    rate_ppm: int
    rate_offset_mhz: int
    max_error: float
    """Largest ``|mean/set − 1|`` over the set points."""
    repeatability: float
    """Pooled standard deviation of single windows' relative errors."""
    uncertainty: float
    """Expanded (k = 2): ``2 √(s_r² + q²/6)``, ``q`` one stroke over the shortest window."""


def setpoints_hz(info_raw: Any, count: int) -> list[float]:
    """``count`` set points on the pen's rate grid, ends included."""
    low, high, step = info_raw.rate_min_mhz, info_raw.rate_max_mhz, max(info_raw.rate_step_mhz, 1)
    if high <= low or count == 1:
        return [low / 1000] if count == 1 or high <= low else [low / 1000, high / 1000]
    picks = {low + round((high - low) * i / (count - 1) / step) * step for i in range(count)}
    return sorted(min(p, high) / 1000 for p in picks)


def drive_hz(setpoint_hz: float, rate_ppm: int, rate_offset_mhz: int) -> float:
    """The pen's rule for the drive of a set rate under a correction (module docstring)."""
    return setpoint_hz * (1 + rate_ppm / 1e6) + rate_offset_mhz / 1000


def analyse(windows: Sequence[Window]) -> RateAnalysis:
    """Fit, inverse correction, errors and uncertainty of one set of windows (pure)."""
    if not windows:
        raise ValueError("no windows to analyse")
    drive = np.array([w.drive_hz for w in windows])
    actual = np.array([w.measured_hz for w in windows])
    if len({w.setpoint_hz for w in windows}) >= 2:
        design = np.column_stack([drive, np.ones_like(drive)])
        (gain, offset), *_ = np.linalg.lstsq(design, actual, rcond=None)
    else:
        gain, offset = float(np.sum(actual * drive) / np.sum(drive * drive)), 0.0
    if not gain > 0:
        raise RateError(
            f"the stroke rate does not rise with the drive (gain {gain:.3f}): is the motor "
            "turning freely?"
        )
    by_point: dict[float, list[float]] = {}
    for w in windows:
        by_point.setdefault(w.setpoint_hz, []).append(w.error)
    max_error = max(abs(float(np.mean(v))) for v in by_point.values())
    squares = sum(float(np.sum((np.array(v) - np.mean(v)) ** 2)) for v in by_point.values())
    dof = sum(len(v) - 1 for v in by_point.values())
    repeatability = math.sqrt(squares / dof) if dof > 0 else 0.0
    quantum = max(1 / (w.setpoint_hz * w.span_s) for w in windows)
    uncertainty = 2 * math.sqrt(repeatability**2 + quantum**2 / 6)
    return RateAnalysis(
        float(gain),
        float(offset),
        round((1 / gain - 1) * 1e6),
        round(-offset / gain * 1000),
        max_error,
        repeatability,
        uncertainty,
    )


async def _next_sample(samples: Subscription[TelemetrySample], timeout_s: float) -> TelemetrySample:
    try:
        return await samples.next(timeout_s)
    except TimeoutError:
        raise RateError(
            f"no telemetry from the pen for {timeout_s:g} s while counting strokes: the rate "
            "cannot be measured"
        ) from None


async def measure_window(
    samples: Subscription[TelemetrySample], *, settle_s: float, window_s: float, timeout_s: float
) -> tuple[int, float]:
    """``(strokes, span_s)`` between two samples at least ``window_s`` of pen time apart, the
    first ``settle_s`` after the first sample that arrives."""
    first = await _next_sample(samples, timeout_s)
    start = first
    while start.time_s - first.time_s < settle_s:
        start = await _next_sample(samples, timeout_s)
    end = start
    while end.time_s - start.time_s < window_s:
        end = await _next_sample(samples, timeout_s)
    strokes = (end.stroke_count - start.stroke_count) % STROKE_COUNT_MODULUS
    span = end.time_s - start.time_s
    if strokes == 0:
        raise RateError(
            f"the pen counted no strokes in {span:.1f} s at a running set point: is a "
            "cartridge fitted and the motor turning?"
        )
    return strokes, span


async def _sweep(
    pen: Pen,
    samples: Subscription[TelemetrySample],
    plan: RatePlan,
    points: Sequence[float],
    table: pentable.PenTable,
    phase: str,
    progress: Progress | None,
) -> list[Window]:
    timeout = max(2.0, 10 / plan.telemetry_hz)
    total = len(points) * plan.repeats
    windows: list[Window] = []
    for setpoint in points:
        await pen.set_stroke_rate(setpoint)
        for repeat in range(plan.repeats):
            settle = plan.settle_s if repeat == 0 else 0.0
            strokes, span = await measure_window(
                samples, settle_s=settle, window_s=plan.window_s, timeout_s=timeout
            )
            drive = drive_hz(setpoint, table.rate_ppm, table.rate_offset_mhz)
            windows.append(Window(setpoint, repeat + 1, drive, strokes, span))
            if progress is not None:
                progress(phase, len(windows), total)
    return windows


async def calibrate_rate(
    pen: Pen,
    *,
    plan: RatePlan | None = None,
    operator_id: str = "",
    environment: str = "",
    progress: Progress | None = None,
) -> CalibrationRecord:
    """Calibrate ``pen``'s stroke rate (see the module docstring); the record's ``verdict``
    says how it ended. Interruptions raise, with the previous calibration in force and the
    motor stopped."""
    plan = plan or RatePlan()
    info = pen.device_info
    raw = info.raw
    started = datetime.now(UTC)
    before = await pentable.read_table(pen)
    status = await pen.status()
    if plan.setpoints_hz is not None:
        points = sorted(set(plan.setpoints_hz))
    else:
        points = setpoints_hz(raw, 1 if info.fixed_rate else plan.points)
    for p in points:  # refuse a set point the pen does not take before anything moves
        rate_mhz(info, p)

    record = record_maker(
        "rate",
        info,
        before,
        started,
        profile=_profile(info),
        gauge_id=f"the pen's stroke counter over {plan.window_s:g} s windows of its clock",
        gauge_resolution_mm=0.0,
        operator_id=operator_id,
        environment=environment,
        tolerance=plan.tolerance,
        hysteresis=0.0,
    )

    async with pen.calibration_mode():
        trial: pentable.PenTable | None = None
        try:
            await pen.set_depth(raw.depth_min_um / 1000)
            await pen.set_telemetry_rate(plan.telemetry_hz)
            async with pen.telemetry() as samples:
                await pen.start()
                found = await _sweep(pen, samples, plan, points, before, "as found", progress)
                analysis = analyse(found)
                rows = _rows("as found", found)
                fit_doc = {
                    "kind": "linear" if len(points) >= 2 else "gain",
                    "gain": analysis.gain,
                    "offset_hz": analysis.offset_hz,
                    "rate_ppm": analysis.rate_ppm,
                    "rate_offset_mhz": analysis.rate_offset_mhz,
                    "rule": "least squares of the counted rate on the drive; the correction is "
                    "its inverse (ppm = (1/gain - 1)·10⁶, offset = -offset/gain)",
                }
                common: dict[str, Any] = {
                    "fit": fit_doc,
                    "as_found_max_error": analysis.max_error,
                    "uncertainty": analysis.uncertainty,
                    "repeatability": analysis.repeatability,
                }
                candidate = pentable.PenTable(
                    pentable.next_version(before.version),
                    False,
                    before.points,
                    analysis.rate_ppm,
                    analysis.rate_offset_mhz,
                )
                ending = Ending(
                    pen, before, record, plan.tolerance, lambda v: f"{v:.2%}", "correction"
                )
                await pen.stop()  # the pen takes a table only while idle
                # From the WRITE's first byte the pen may hold it on trial: an interruption
                # before stage() returns must discard it too.
                trial = candidate
                try:
                    trial = await pentable.stage(pen, candidate)
                except PenRefused as exc:
                    return ending.rejected(exc, candidate, rows, common)
                await pen.start()
                left = await _sweep(pen, samples, plan, points, trial, "as left", progress)
                await pen.stop()
                verified = analyse(left)
                rows += _rows("as left", left)
                common["uncertainty"] = verified.uncertainty
                common["repeatability"] = verified.repeatability
                as_left = verified.max_error
                outcome = await ending.decide(
                    trial,
                    as_left=as_left,
                    rows=rows,
                    common=common,
                    summary=f"largest rate error {analysis.max_error:.2%} as found, "
                    f"{as_left:.2%} as left (tolerance ±{plan.tolerance:.2%}); correction "
                    f"{trial.rate_ppm:+d} ppm {trial.rate_offset_mhz / 1000:+.3f} Hz",
                )
                trial = None
                return outcome
        finally:
            await asyncio.shield(_put_back(pen, trial, status))


async def _put_back(pen: Pen, trial: pentable.PenTable | None, status: Status) -> None:
    """Stop the motor, drop an unfinished trial, restore the set rate and telemetry, as far as
    the link still lets us (a pen that lost its host stops its motor by its watchdog, which
    drops the trial too)."""
    with contextlib.suppress(PenError, TimeoutError, OSError):
        async with asyncio.timeout(2.0):
            await pen.stop()
    if trial is not None:
        await pentable.discard_quietly(pen)
    with contextlib.suppress(PenError, TimeoutError, OSError, ValueError):
        async with asyncio.timeout(2.0):
            await pen.set_stroke_rate(status.rate_setpoint_hz)
            await pen.set_telemetry_rate(status.telemetry_rate_hz)


def _profile(info: Any) -> str:
    return f"{info.model}: {info.rate_min_hz:g}-{info.rate_max_hz:g} Hz" + (
        f" in {info.rate_step_hz:g} Hz steps" if info.rate_step_hz else ""
    )


def _rows(phase: str, windows: Sequence[Window]) -> list[dict[str, Any]]:
    return [
        {
            "phase": phase,
            "setpoint_hz": w.setpoint_hz,
            "repeat": w.repeat,
            "window_s": round(w.span_s, 6),
            "strokes": w.strokes,
            "measured_hz": round(w.measured_hz, 6),
            "error_pct": round(w.error * 100, 4),
            "rejected": False,
            "reason": "",
        }
        for w in windows
    ]
