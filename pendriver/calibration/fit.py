"""The depth calibration's arithmetic: outliers, backlash, repeatability, the fit, the table.

Pure numpy, no I/O: readings in, a fit and a table out, so every figure on a calibration report
can be recomputed from the raw points in its CSV.

Model. The pen drives its actuator to ``T(d)`` for a set depth ``d``, where ``T`` is the table
in force (docs/PROTOCOL.md, "Calibration tables": linear between points, end segments
extended, the empty table the identity). The gauge reads the true protrusion ``y``. A
calibration fits ``y = f(a)`` on the actuator positions ``a = T(d)`` (so it works whatever table
was in force when it measured) and inverts it: the new table sends depth ``D`` to ``f⁻¹(D)``.

Rules, stated so a report can quote them:

* **Outliers.** Within each group (one set point, one direction of approach), a reading is
  rejected when it lies further from the group's median than both ``3 × 1.4826 × MAD`` (three
  robust standard deviations) and two gauge resolutions (so a quantised gauge, whose MAD is
  often 0, does not reject its own last digit). At most a third of a group may go; a group
  that would lose more is kept whole and flagged (the pen, not the gauge, is then suspect).
* **Needle length.** With a cartridge fitted, a reading within two gauge resolutions of its
  needles' length is rejected first: the needles stand out no further than they are long, so
  it measures the cartridge, not the actuator's stop. A set point left with no reading is
  left out of the fit (and of the verification), and the table extends the fit there.
* **Backlash.** The mean of the upward and the downward approach is the depth the table
  corrects to; their difference is the hysteresis, reported, not corrected (a pen cannot know
  from which side a user will come).
* **Fit.** Least squares (``numpy.linalg.lstsq``) of ``y`` on ``a``, straight line first. When
  the line leaves a residual larger than half the tolerance and larger than three times the
  repeatability, it is a piecewise-linear fit instead, with a knot at every measured set point
  (at most 16, the table's size), which the pen's own interpolation reproduces exactly.
* **Uncertainty** of one setting after calibration, expanded with ``k = 2``:
  ``U = 2 √(s_r² + (res/√12)² + (h/2)²/3 + s_fit²)``, from the repeatability ``s_r`` (pooled
  standard deviation of single readings), the gauge's resolution ``res`` (rectangular), the
  largest hysteresis ``h`` (rectangular, half-width ``h/2``) and the fit's residual standard
  deviation ``s_fit``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from firmware_protocol.calibration import MAX_TABLE_POINTS, piecewise_linear

MAD_TO_SIGMA = 1.4826
"""A normal distribution's standard deviation per median absolute deviation."""
OUTLIER_SIGMAS = 3.0
OUTLIER_MIN_RESOLUTIONS = 2.0


@dataclass(frozen=True, slots=True)
class Reading:
    """One settled gauge reading at one set point."""

    setpoint_um: int
    direction: int
    """+1 when the set point was approached from below (the sweep going deeper), -1 from above."""
    repeat: int
    actuator_um: float
    """Where the table in force drove the actuator for this set point."""
    measured_um: float
    rejected: bool = False
    reason: str = ""


@dataclass(frozen=True, slots=True)
class PointSummary:
    """What one set point's readings say, both directions together."""

    setpoint_um: int
    actuator_um: float
    mean_um: float
    """Mean of the upward and the downward means (the backlash-free depth)."""
    error_um: float
    """``mean_um - setpoint_um``."""
    hysteresis_um: float
    """Upward mean less downward mean (0 when only one direction was measured)."""
    spread_um: float
    """Largest minus smallest accepted reading."""
    kept: int
    rejected: int


@dataclass(frozen=True, slots=True)
class Fit:
    """``measured = f(actuator)``: a line, or a piecewise-linear curve through ``knots``."""

    kind: str
    """``"linear"`` or ``"piecewise"``."""
    gain: float
    offset_um: float
    """The straight line's ``measured = gain * actuator + offset`` (also for a piecewise fit:
    the line it improved on, for the report)."""
    knots: tuple[tuple[float, float], ...]
    """``(actuator_um, measured_um)`` pairs of a piecewise fit, increasing; empty for a line."""
    residual_sd_um: float
    max_residual_um: float

    def measured_at(self, actuator_um: float | np.ndarray) -> np.ndarray:
        a = np.asarray(actuator_um, dtype=float)
        if self.kind == "linear":
            return self.gain * a + self.offset_um
        xs, ys = (np.array(v) for v in zip(*self.knots, strict=True))
        return _extended_interp(a, xs, ys)

    def actuator_for(self, depth_um: float | np.ndarray) -> np.ndarray:
        """The inverse: where to drive the actuator for a true depth."""
        d = np.asarray(depth_um, dtype=float)
        if self.kind == "linear":
            return (d - self.offset_um) / self.gain
        xs, ys = (np.array(v) for v in zip(*self.knots, strict=True))
        return _extended_interp(d, ys, xs)


@dataclass(frozen=True, slots=True)
class Analysis:
    readings: tuple[Reading, ...]
    """Every reading, the rejected ones marked with their reason."""
    points: tuple[PointSummary, ...]
    fit: Fit
    repeatability_um: float
    """Pooled standard deviation of single readings within their groups."""
    max_hysteresis_um: float
    max_error_um: float
    """Largest ``|mean - set point|``: the error as the scale stood when measured."""
    uncertainty_um: float
    """Expanded uncertainty of one setting, k = 2 (see the module docstring)."""


def apply_table(points: Sequence[tuple[int, int]], depth_um: float) -> float:
    """Where a pen with this calibration table drives its actuator for ``depth_um``: the pen's
    own rule (:func:`firmware_protocol.calibration.piecewise_linear`; empty = identity)."""
    if not points:
        return float(depth_um)
    return piecewise_linear(depth_um, [d for d, _ in points], [a for _, a in points])


def _extended_interp(x: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """``np.interp`` with the end segments extended instead of held flat."""
    out = np.interp(x, xs, ys)
    lo, hi = x < xs[0], x > xs[-1]
    out = np.where(lo, ys[0] + (x - xs[0]) * (ys[1] - ys[0]) / (xs[1] - xs[0]), out)
    extended: np.ndarray = np.where(
        hi, ys[-1] + (x - xs[-1]) * (ys[-1] - ys[-2]) / (xs[-1] - xs[-2]), out
    )
    return extended


def reject_outliers(readings: Sequence[Reading], resolution_um: float) -> list[Reading]:
    """The readings with outliers marked (the rule is in the module docstring)."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, r in enumerate(readings):
        if not r.rejected:  # already out (at the needles' length): not part of the spread
            groups.setdefault((r.setpoint_um, r.direction), []).append(i)
    out = list(readings)
    floor = OUTLIER_MIN_RESOLUTIONS * resolution_um
    for (setpoint, direction), idx in groups.items():
        values = np.array([readings[i].measured_um for i in idx])
        median = float(np.median(values))
        limit = max(OUTLIER_SIGMAS * MAD_TO_SIGMA * float(np.median(abs(values - median))), floor)
        bad = [i for i, v in zip(idx, values, strict=True) if abs(v - median) > limit]
        if not bad:
            continue
        if len(bad) * 3 > len(idx):
            continue  # too many to be the gauge's fault: keep them, the spread shows it
        for i in bad:
            r = readings[i]
            why = (
                f"{r.measured_um - median:+.1f} µm from the median of its "
                f"{len(idx)} readings at {setpoint} µm "
                f"({'up' if direction > 0 else 'down'}); limit ±{limit:.1f} µm"
            )
            out[i] = Reading(
                r.setpoint_um, r.direction, r.repeat, r.actuator_um, r.measured_um, True, why
            )
    return out


def summarise(readings: Sequence[Reading]) -> tuple[list[PointSummary], float]:
    """Per set point: both directions' means, hysteresis, spread; and the repeatability."""
    by_point: dict[int, dict[int, list[Reading]]] = {}
    for r in readings:
        by_point.setdefault(r.setpoint_um, {}).setdefault(r.direction, []).append(r)
    points = []
    squares, dof = 0.0, 0
    for setpoint in sorted(by_point):
        directions = by_point[setpoint]
        means = {}
        kept_all: list[float] = []
        rejected = 0
        actuator = 0.0
        for direction, group in directions.items():
            kept = [r.measured_um for r in group if not r.rejected]
            rejected += len(group) - len(kept)
            actuator = group[0].actuator_um
            if not kept:
                continue
            means[direction] = float(np.mean(kept))
            kept_all += kept
            squares += float(np.sum((np.array(kept) - means[direction]) ** 2))
            dof += len(kept) - 1
        if not means:
            continue
        mean = float(np.mean(list(means.values())))
        hysteresis = means[1] - means[-1] if len(means) == 2 else 0.0
        points.append(
            PointSummary(
                setpoint,
                actuator,
                mean,
                mean - setpoint,
                hysteresis,
                max(kept_all) - min(kept_all),
                len(kept_all),
                rejected,
            )
        )
    repeatability = math.sqrt(squares / dof) if dof > 0 else 0.0
    return points, repeatability


def fit_scale(
    points: Sequence[PointSummary], *, tolerance_um: float, repeatability_um: float
) -> Fit:
    """``measured = f(actuator)`` over the points (the rules are in the module docstring)."""
    if len(points) < 2:
        raise ValueError("a fit needs at least two set points")
    a = np.array([p.actuator_um for p in points])
    y = np.array([p.mean_um for p in points])
    design = np.column_stack([a, np.ones_like(a)])
    (gain, offset), *_ = np.linalg.lstsq(design, y, rcond=None)
    residuals = y - (gain * a + offset)
    sd = float(np.sqrt(np.sum(residuals**2) / max(len(a) - 2, 1)))
    worst = float(np.max(np.abs(residuals)))
    if gain <= 0:
        raise ValueError(
            f"the measured depth falls as the set depth rises (gain {gain:.3f}): is the gauge "
            "on the needles, and reading the right way round?"
        )
    wants_curve = worst > tolerance_um / 2 and worst > 3 * repeatability_um
    if not wants_curve or len(points) > MAX_TABLE_POINTS:
        return Fit("linear", float(gain), float(offset), (), sd, worst)
    order = np.argsort(a)
    if np.any(np.diff(y[order]) <= 0):
        # Not invertible through its knots: the line is the best the table can hold.
        return Fit("linear", float(gain), float(offset), (), sd, worst)
    knots = tuple((float(a[i]), float(y[i])) for i in order)
    return Fit("piecewise", float(gain), float(offset), knots, 0.0, 0.0)


def at_needle_length(
    readings: Sequence[Reading], ceiling_um: float | None, resolution_um: float
) -> list[Reading]:
    """The readings with those at the fitted needles' length marked rejected.

    The actuator's stop only limits how far the needles come out: set beyond their length,
    they stand out as far as they are long and no further, so a reading there (within two
    gauge resolutions) measures the cartridge, not the stop, and would bend the fit.
    """
    if ceiling_um is None:
        return list(readings)
    limit = ceiling_um - OUTLIER_MIN_RESOLUTIONS * resolution_um
    why = (
        f"at the fitted needles' length ({ceiling_um / 1000:.3f} mm): they stand out no "
        "further, so the reading does not measure the stop"
    )
    return [
        Reading(r.setpoint_um, r.direction, r.repeat, r.actuator_um, r.measured_um, True, why)
        if r.measured_um >= limit and not r.rejected
        else r
        for r in readings
    ]


def analyse(
    readings: Sequence[Reading],
    *,
    resolution_um: float,
    tolerance_um: float,
    ceiling_um: float | None = None,
) -> Analysis:
    """Outliers, summaries, the fit and the uncertainty of one sweep; ``ceiling_um``: the
    fitted needles' length, if a cartridge is fitted (:func:`at_needle_length`)."""
    marked = reject_outliers(at_needle_length(readings, ceiling_um, resolution_um), resolution_um)
    points, repeatability = summarise(marked)
    fit = fit_scale(points, tolerance_um=tolerance_um, repeatability_um=repeatability)
    hysteresis = max((abs(p.hysteresis_um) for p in points), default=0.0)
    max_error = max((abs(p.error_um) for p in points), default=0.0)
    return Analysis(
        tuple(marked),
        tuple(points),
        fit,
        repeatability,
        hysteresis,
        max_error,
        expanded_uncertainty(repeatability, resolution_um, hysteresis, fit.residual_sd_um),
    )


def expanded_uncertainty(
    repeatability_um: float, resolution_um: float, hysteresis_um: float, fit_sd_um: float
) -> float:
    """``U`` (k = 2) of one setting; the budget is in the module docstring."""
    variance = (
        repeatability_um**2 + resolution_um**2 / 12 + (hysteresis_um / 2) ** 2 / 3 + fit_sd_um**2
    )
    return 2 * math.sqrt(variance)


def table_for(
    fit: Fit, depth_min_um: int, depth_max_um: int, points: int = 8
) -> tuple[tuple[int, int], ...]:
    """The calibration table that makes the pen put its needles where it is told: ``points``
    depths from ``depth_min_um`` to ``depth_max_um`` (and every knot of a piecewise fit), each
    sent to the actuator position the fit says gives it, rounded to the µm."""
    if fit.kind == "piecewise":
        depths = np.array(sorted({round(y) for _a, y in fit.knots}), dtype=float)
    else:
        depths = np.linspace(depth_min_um, depth_max_um, max(2, min(points, MAX_TABLE_POINTS)))
    actuators = fit.actuator_for(depths)
    pairs = zip(depths.tolist(), actuators.tolist(), strict=True)
    table = tuple((round(d), round(a)) for d, a in pairs)
    return _strictly_increasing(table)


def _strictly_increasing(table: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
    """Drop points that rounding made equal to their neighbour (the pen needs both columns
    strictly increasing)."""
    out: list[tuple[int, int]] = []
    for d, a in table:
        if out and (d <= out[-1][0] or a <= out[-1][1]):
            continue
        out.append((d, a))
    return tuple(out)
