"""Scripted pen motions and the tip motion sensor.

A simulated pen needs somewhere to be: its telemetry carries the tip position, and the
puncture-density engine stamps needles wherever the tip was at each stroke. This module says
where that is, exactly and reproducibly, so a density map can be checked against geometry
worked out by hand.

Conventions shared by everything here:

* **Units.** Geometry is given in millimetres and mm/s, the way a clinician describes a pass.
  :meth:`Trajectory.position` answers in **micrometres**, the unit of ``tip_x_um``/``tip_y_um``
  on the wire and of :class:`~simulator.firmware.PenFirmware`'s ``trajectory`` argument;
  :meth:`Trajectory.position_mm` answers in millimetres. x grows to the right, y upwards.
* **Time** is seconds since the pen booted (the firmware samples ``trajectory(uptime)``).
* **Callable.** Every trajectory is ``traj(t) -> (x_um, y_um)``, so ``PenFirmware(...,
  trajectory=traj)`` and ``trajectory=traj.position`` both work.
* **Span.** ``start_s`` is when the motion begins and ``duration_s`` how long it lasts (``None``:
  it never ends). Before ``start_s`` the tip rests at the first point; after ``end_s`` it rests
  at the last one. Nothing here ever extrapolates.
* **Tip footprint.** The tip is modelled as an axis-aligned square of side ``tip_width_mm``
  centred on the position. A raster keeps that square inside its zone, and sweeping the square
  along the path covers the whole zone (see :class:`Raster`).

Segments chain with :class:`Sequence` (or :meth:`Trajectory.then`); each segment runs on its own
clock, which starts when the previous segment ends. Where one segment ends and the next starts
somewhere else, the tip jumps: the pen was lifted and put down again.
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
import struct
from abc import ABC, abstractmethod
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from itertools import pairwise
from pathlib import Path
from typing import Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "Circle",
    "CsvTrack",
    "Raster",
    "Sequence",
    "Stationary",
    "TipSensor",
    "Trajectory",
    "trajectory_from_spec",
]

PointMM = tuple[float, float]
UM_PER_MM: Final = 1000.0

# A line count is the smallest that keeps the spacing at or below the nominal one; this much
# relative slack stops a zone that is an exact multiple of the spacing from gaining a line
# through a rounding error in the division.
_COUNT_SLACK: Final = 1e-9


def _finite(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    return value


REACH_MM: Final = 1000.0
"""How far from the origin (either axis) a tip may be: a metre covers any body, and the wire
(``tip_x_um`` / ``tip_y_um``, i32 µm) carries ±2147 mm. A track beyond it is a units mistake
(µm given as mm), refused here rather than failing in the telemetry encoder mid-pass."""


def _within_reach(name: str, value: float) -> float:
    value = _finite(name, value)
    if abs(value) > REACH_MM:
        raise ValueError(
            f"{name} puts the tip {value:g} mm from the origin, beyond the ±{REACH_MM:g} mm a "
            "pen can be moved over (mm, not µm?)"
        )
    return value


def _positive(name: str, value: float) -> float:
    value = _finite(name, value)
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    return value


def _point(name: str, value: Iterable[float]) -> PointMM:
    items = tuple(value)
    if len(items) != 2:
        raise ValueError(f"{name} must be two numbers (x, y), got {items!r}")
    return (_within_reach(name, items[0]), _within_reach(name, items[1]))


class Trajectory(ABC):
    """A tip position for every moment: the shared interface of every scripted motion."""

    @property
    @abstractmethod
    def start_s(self) -> float:
        """When the motion begins; before it the tip rests at the first point."""

    @property
    @abstractmethod
    def duration_s(self) -> float | None:
        """How long the motion lasts (``None``: endless); after it the tip rests."""

    @property
    def end_s(self) -> float | None:
        """When the motion stops (``None``: never)."""
        duration = self.duration_s
        return None if duration is None else self.start_s + duration

    @abstractmethod
    def position_mm(self, t: float) -> PointMM:
        """Tip centre in mm at ``t`` seconds since boot."""

    def position(self, t: float) -> tuple[float, float]:
        """Tip centre in µm at ``t`` seconds since boot: what the firmware reports."""
        x, y = self.position_mm(t)
        return (x * UM_PER_MM, y * UM_PER_MM)

    def __call__(self, t: float) -> tuple[float, float]:
        return self.position(t)

    def sample_mm(self, times_s: ArrayLike) -> NDArray[np.float64]:
        """Positions in mm at many times at once, shape ``(n, 2)``.

        Subclasses vectorise this for the density engine, which wants a position per stroke
        (hundreds of thousands a session); the result equals :meth:`position_mm` per time.
        """
        ts = np.asarray(times_s, dtype=np.float64).reshape(-1)
        out = np.empty((ts.size, 2), dtype=np.float64)
        for i, t in enumerate(ts.tolist()):
            out[i] = self.position_mm(t)
        return out

    def sample(self, times_s: ArrayLike) -> NDArray[np.float64]:
        """Positions in µm at many times at once, shape ``(n, 2)``."""
        return self.sample_mm(times_s) * UM_PER_MM

    def then(self, *others: Trajectory) -> Sequence:
        """This motion, then each of ``others`` in turn (see :class:`Sequence`)."""
        return Sequence([self, *others])

    def offset(self, dt_s: float) -> Trajectory:
        """The same motion ``dt_s`` seconds later (earlier if negative)."""
        return _Moved(self, _finite("dt_s", dt_s), 0.0, 0.0)

    def shift(self, dx_mm: float, dy_mm: float) -> Trajectory:
        """The same motion translated by ``(dx_mm, dy_mm)``."""
        return _Moved(self, 0.0, _finite("dx_mm", dx_mm), _finite("dy_mm", dy_mm))


class _Polyline:
    """Piecewise-linear interpolation through knots, resting at the ends.

    Exact at the knots: between knots ``i`` and ``i+1`` the point is ``p_i + f (p_{i+1} - p_i)``
    with ``f = 0`` at ``t_i``, so an axis-aligned move never leaves its line.
    """

    __slots__ = ("times", "xs", "ys")

    def __init__(self, times: list[float], xs: list[float], ys: list[float]) -> None:
        self.times = times
        self.xs = xs
        self.ys = ys

    def at(self, t: float) -> PointMM:
        times = self.times
        if t <= times[0]:
            return (self.xs[0], self.ys[0])
        if t >= times[-1]:
            return (self.xs[-1], self.ys[-1])
        i = bisect_right(times, t) - 1
        t0 = times[i]
        f = (t - t0) / (times[i + 1] - t0)
        x0, y0 = self.xs[i], self.ys[i]
        return (x0 + f * (self.xs[i + 1] - x0), y0 + f * (self.ys[i + 1] - y0))

    def sample(self, ts: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.column_stack(
            (np.interp(ts, self.times, self.xs), np.interp(ts, self.times, self.ys))
        )


class Raster(Trajectory):
    """A boustrophedon (serpentine) pass over a rectangular zone at constant glide speed.

    Geometry, for ``direction="x"`` (for ``"y"`` swap the roles of x and y):

    * The zone is ``[ox, ox + width_mm] × [oy, oy + height_mm]`` with ``origin_mm = (ox, oy)``
      its lower-left corner.
    * The tip centre stays in the zone inset by half a tip width on every side, so the square
      tip never leaves the zone. Lines run along x from ``ox + w/2`` to ``ox + width_mm - w/2``.
    * The nominal line spacing is ``tip_width_mm * (1 - overlap)``. The first line lies at
      ``oy + w/2``, the last at ``oy + height_mm - w/2``, and the others are spread evenly
      between them; :attr:`lines` is the smallest count whose spacing does not exceed the
      nominal one (:attr:`line_positions_mm` lists where they are).
      The actual spacing (:attr:`line_spacing_mm`) therefore equals the nominal one when the
      inset height is a whole multiple of it and is otherwise a little smaller, i.e. the overlap
      is never less than asked (:attr:`effective_overlap`). Consecutive swaths of the square tip
      then touch or overlap, so every point of the zone is within ``w/2`` (in each axis) of the
      path. A zone exactly one tip high gets one line through its middle.
    * The path starts at the lower-left inset corner, runs the first line towards +x, steps up
      by one spacing (a "connecting move", also at glide speed), runs back, and so on.
    * ``passes > 1`` retrace the path: even passes run it backwards from where the previous
      pass ended, so the motion is continuous and a double pass doubles every point's dose. A
      cross-hatch is ``Raster(..., direction="x").then(Raster(..., direction="y"))``.

    The speed along the whole path is exactly ``glide_mm_s``; the motion takes
    ``length_mm / glide_mm_s`` seconds from ``start_s``.
    """

    def __init__(
        self,
        width_mm: float,
        height_mm: float,
        glide_mm_s: float,
        tip_width_mm: float,
        overlap: float,
        origin_mm: Iterable[float] = (0.0, 0.0),
        start_s: float = 0.0,
        passes: int = 1,
        direction: str = "x",
    ) -> None:
        self.width_mm = _positive("width_mm", width_mm)
        self.height_mm = _positive("height_mm", height_mm)
        self.glide_mm_s = _positive("glide_mm_s", glide_mm_s)
        self.tip_width_mm = tip = _positive("tip_width_mm", tip_width_mm)
        self.overlap = _finite("overlap", overlap)
        if not 0.0 <= self.overlap < 1.0:
            raise ValueError(f"overlap must be in [0, 1), got {self.overlap}")
        self.origin_mm = _point("origin_mm", origin_mm)
        self._start_s = _finite("start_s", start_s)
        if isinstance(passes, bool) or not isinstance(passes, int) or passes < 1:
            raise ValueError(f"passes must be a whole number >= 1, got {passes!r}")
        self.passes = passes
        if direction not in ("x", "y"):
            raise ValueError(f"direction must be 'x' or 'y', got {direction!r}")
        self.direction = direction
        _within_reach("origin_mm + width_mm", self.origin_mm[0] + self.width_mm)
        _within_reach("origin_mm + height_mm", self.origin_mm[1] + self.height_mm)
        if tip > self.width_mm or tip > self.height_mm:
            raise ValueError(
                f"the tip ({tip} mm) does not fit in a {self.width_mm} × {self.height_mm} mm zone"
            )

        # Work in (u, v): u along the lines, v across them; "y" swaps back at the end.
        ox, oy = self.origin_mm
        if direction == "x":
            along, across, u0, v0 = self.width_mm, self.height_mm, ox, oy
        else:
            along, across, u0, v0 = self.height_mm, self.width_mm, oy, ox
        self.nominal_spacing_mm = tip * (1.0 - self.overlap)
        span = across - tip
        if span > 0:
            steps = math.ceil(span / self.nominal_spacing_mm - _COUNT_SLACK)
            self.lines = 1 + max(1, steps)
            self.line_spacing_mm = span / (self.lines - 1)
            first, last = v0 + tip / 2, v0 + tip / 2 + span
            middle = [first + span * k / (self.lines - 1) for k in range(1, self.lines - 1)]
            self.line_positions_mm: tuple[float, ...] = (first, *middle, last)
        else:
            self.lines = 1
            self.line_spacing_mm = 0.0
            self.line_positions_mm = (v0 + across / 2,)
        # Offsets from one base point, so that a zone one tip long gives exactly equal ends.
        ua, ub = u0 + tip / 2, u0 + tip / 2 + (along - tip)

        one_pass: list[PointMM] = []
        for k, v in enumerate(self.line_positions_mm):
            ends = (ua, ub) if k % 2 == 0 else (ub, ua)
            for u in ends:
                point = (u, v) if direction == "x" else (v, u)
                if not one_pass or one_pass[-1] != point:  # a zone one tip long: no line to run
                    one_pass.append(point)
        path = list(one_pass)
        for p in range(1, passes):
            path += (one_pass[::-1] if p % 2 else one_pass)[1:]
        self.waypoints: tuple[PointMM, ...] = tuple(path)

        self.pass_length_mm = sum(math.dist(a, b) for a, b in pairwise(one_pass))
        self.length_mm = self.pass_length_mm * passes
        times = [self._start_s]
        travelled = 0.0
        for a, b in pairwise(path):
            travelled += math.dist(a, b)
            times.append(self._start_s + travelled / self.glide_mm_s)
        self._line = _Polyline(times, [p[0] for p in path], [p[1] for p in path])

    @property
    def start_s(self) -> float:
        return self._start_s

    @property
    def duration_s(self) -> float:
        return self.length_mm / self.glide_mm_s

    @property
    def effective_overlap(self) -> float:
        """The overlap the line spacing actually gives (>= the one asked for)."""
        if self.lines == 1:
            return self.overlap
        return 1.0 - self.line_spacing_mm / self.tip_width_mm

    @property
    def knot_times_s(self) -> tuple[float, ...]:
        """When the tip is at each of :attr:`waypoints`."""
        return tuple(self._line.times)

    def position_mm(self, t: float) -> PointMM:
        return self._line.at(t)

    def sample_mm(self, times_s: ArrayLike) -> NDArray[np.float64]:
        return self._line.sample(np.asarray(times_s, dtype=np.float64).reshape(-1))

    def __repr__(self) -> str:
        return (
            f"Raster(width_mm={self.width_mm}, height_mm={self.height_mm}, "
            f"glide_mm_s={self.glide_mm_s}, tip_width_mm={self.tip_width_mm}, "
            f"overlap={self.overlap}, origin_mm={self.origin_mm}, start_s={self._start_s}, "
            f"passes={self.passes}, direction={self.direction!r})"
        )


class Circle(Trajectory):
    """Circling a centre at constant speed, anticlockwise, from the point at angle 0 (``+x``).

    ``turns=None`` circles for ever; otherwise the tip stops where the last turn ends (back at
    the start point for whole turns).
    """

    def __init__(
        self,
        center_mm: Iterable[float],
        radius_mm: float,
        speed_mm_s: float,
        start_s: float = 0.0,
        turns: float | None = None,
    ) -> None:
        self.center_mm = _point("center_mm", center_mm)
        self.radius_mm = _positive("radius_mm", radius_mm)
        for axis, centre in zip("xy", self.center_mm, strict=True):
            for side in (-1, 1):
                _within_reach(f"center_mm {axis} ± radius_mm", centre + side * self.radius_mm)
        self.speed_mm_s = _positive("speed_mm_s", speed_mm_s)
        self._start_s = _finite("start_s", start_s)
        self.turns = None if turns is None else _positive("turns", turns)
        self._omega = self.speed_mm_s / self.radius_mm

    @property
    def start_s(self) -> float:
        return self._start_s

    @property
    def period_s(self) -> float:
        """Time for one turn."""
        return 2.0 * math.pi * self.radius_mm / self.speed_mm_s

    @property
    def duration_s(self) -> float | None:
        return None if self.turns is None else self.turns * self.period_s

    def _angle(self, t: float) -> float:
        elapsed = t - self._start_s
        if elapsed <= 0:
            return 0.0
        if self.turns is not None and elapsed >= self.turns * self.period_s:
            return 2.0 * math.pi * self.turns
        return self._omega * elapsed

    def position_mm(self, t: float) -> PointMM:
        angle = self._angle(t)
        cx, cy = self.center_mm
        return (cx + self.radius_mm * math.cos(angle), cy + self.radius_mm * math.sin(angle))

    def sample_mm(self, times_s: ArrayLike) -> NDArray[np.float64]:
        ts = np.asarray(times_s, dtype=np.float64).reshape(-1)
        elapsed = np.maximum(ts - self._start_s, 0.0)
        if self.turns is not None:
            elapsed = np.minimum(elapsed, self.turns * self.period_s)
        angle = self._omega * elapsed
        if self.turns is not None:  # land on the end point exactly as position_mm does
            angle[elapsed >= self.turns * self.period_s] = 2.0 * math.pi * self.turns
        cx, cy = self.center_mm
        return np.column_stack(
            (cx + self.radius_mm * np.cos(angle), cy + self.radius_mm * np.sin(angle))
        )

    def __repr__(self) -> str:
        return (
            f"Circle(center_mm={self.center_mm}, radius_mm={self.radius_mm}, "
            f"speed_mm_s={self.speed_mm_s}, start_s={self._start_s}, turns={self.turns})"
        )


class Stationary(Trajectory):
    """A tip held still; with ``duration_s`` it is a dwell inside a :class:`Sequence`."""

    def __init__(self, x_mm: float, y_mm: float, duration_s: float | None = None) -> None:
        self.point_mm = (_within_reach("x_mm", x_mm), _within_reach("y_mm", y_mm))
        if duration_s is not None and _finite("duration_s", duration_s) < 0:
            raise ValueError(f"duration_s must be >= 0, got {duration_s}")
        self._duration_s = None if duration_s is None else float(duration_s)

    @property
    def start_s(self) -> float:
        return 0.0

    @property
    def duration_s(self) -> float | None:
        return self._duration_s

    def position_mm(self, t: float) -> PointMM:
        return self.point_mm

    def sample_mm(self, times_s: ArrayLike) -> NDArray[np.float64]:
        n = np.asarray(times_s, dtype=np.float64).size
        return np.tile(np.array(self.point_mm, dtype=np.float64), (n, 1))

    def __repr__(self) -> str:
        x, y = self.point_mm
        return f"Stationary(x_mm={x}, y_mm={y}, duration_s={self._duration_s})"


class CsvTrack(Trajectory):
    """A recorded or hand-written track: knots ``(t_s, x_mm, y_mm)``, linear in between.

    The file format is CSV with a header line naming the columns ``t_s``, ``x_mm`` and
    ``y_mm`` (in any order; other columns are ignored), one knot per line, times strictly
    increasing, every value finite. Blank lines are skipped. Times are seconds since boot, as
    recorded: a track recorded from telemetry (``device_time_us / 1e6``, ``tip_x_um / 1000``)
    replays at the moments it was recorded. ``offset(-track.start_s)`` plays it from boot.
    """

    COLUMNS: Final = ("t_s", "x_mm", "y_mm")

    def __init__(self, rows: Iterable[Iterable[float]], *, source: str = "<rows>") -> None:
        """A track from ``(t_s, x_mm, y_mm)`` rows; errors name ``source`` and the row (from 1)."""
        knots: list[tuple[float, float, float]] = []
        for number, row in enumerate(rows, start=1):
            values = tuple(row)
            where = f"{source}: row {number}"
            if len(values) != 3:
                raise ValueError(f"{where}: expected 3 values (t_s, x_mm, y_mm), got {len(values)}")
            knots.append(_checked_knot(where, values, knots[-1][0] if knots else None))
        if not knots:
            raise ValueError(f"{source}: no rows")
        self.source = source
        self._line = _Polyline([k[0] for k in knots], [k[1] for k in knots], [k[2] for k in knots])

    @classmethod
    def from_rows(cls, rows: Iterable[Iterable[float]], *, source: str = "<rows>") -> CsvTrack:
        """A track from ``(t_s, x_mm, y_mm)`` rows, e.g. converted from recorded telemetry."""
        return cls(rows, source=source)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CsvTrack:
        """Read a track file; a bad file raises ``ValueError('FILE:LINE: problem')``."""
        name = os.fspath(path)
        try:
            with open(path, newline="", encoding="utf-8-sig") as f:
                return cls(_read_knots(name, f), source=name)
        except UnicodeDecodeError as e:
            raise ValueError(f"{name}: not UTF-8 text ({e.reason} at byte {e.start})") from None

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the track so that :meth:`load` gives back exactly the same knots."""
        with open(path, "w", newline="", encoding="utf-8") as f:
            f.write(",".join(self.COLUMNS) + "\n")
            for t, x, y in self.knots:
                f.write(f"{t!r},{x!r},{y!r}\n")

    @property
    def knots(self) -> tuple[tuple[float, float, float], ...]:
        line = self._line
        return tuple(zip(line.times, line.xs, line.ys, strict=True))

    @property
    def start_s(self) -> float:
        return self._line.times[0]

    @property
    def duration_s(self) -> float:
        return self._line.times[-1] - self._line.times[0]

    def position_mm(self, t: float) -> PointMM:
        return self._line.at(t)

    def sample_mm(self, times_s: ArrayLike) -> NDArray[np.float64]:
        return self._line.sample(np.asarray(times_s, dtype=np.float64).reshape(-1))

    def __repr__(self) -> str:
        return f"CsvTrack(<{len(self._line.times)} knots from {self.source}>)"


def _checked_knot(
    where: str, values: tuple[str | float, ...], previous_t: float | None
) -> tuple[float, float, float]:
    """One knot as floats, or a ValueError that starts with ``where``."""
    knot: list[float] = []
    for column, raw in zip(CsvTrack.COLUMNS, values, strict=True):
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: {column} is not a number: {raw!r}") from None
        if not math.isfinite(value):
            raise ValueError(f"{where}: {column} is not finite: {raw!r}")
        if column != "t_s":
            try:
                _within_reach(column, value)
            except ValueError as e:
                raise ValueError(f"{where}: {e}") from None
        knot.append(value)
    t, x, y = knot
    if previous_t is not None and not t > previous_t:
        raise ValueError(f"{where}: t_s must increase strictly, got {t!r} after {previous_t!r}")
    return (t, x, y)


def _read_knots(name: str, f: Iterable[str]) -> list[tuple[float, float, float]]:
    reader = csv.reader(f)
    knots: list[tuple[float, float, float]] = []
    columns: tuple[int, int, int] | None = None
    width = 0
    try:
        for row in reader:
            where = f"{name}:{reader.line_num}"
            if not row or all(not cell.strip() for cell in row):
                continue
            if columns is None:
                header = [cell.strip() for cell in row]
                for column in CsvTrack.COLUMNS:
                    if header.count(column) != 1:
                        what = "missing" if column not in header else "repeated"
                        raise ValueError(
                            f"{where}: header {what} column {column!r}; "
                            f"expected {','.join(CsvTrack.COLUMNS)}"
                        )
                it, ix, iy = (header.index(c) for c in CsvTrack.COLUMNS)
                columns, width = (it, ix, iy), len(header)
                continue
            if len(row) != width:
                raise ValueError(f"{where}: expected {width} fields, got {len(row)}")
            values = tuple(row[i].strip() for i in columns)
            knots.append(_checked_knot(where, values, knots[-1][0] if knots else None))
    except csv.Error as e:
        raise ValueError(f"{name}:{reader.line_num}: unreadable CSV: {e}") from None
    if columns is None:
        raise ValueError(f"{name}:1: empty file; expected a header {','.join(CsvTrack.COLUMNS)}")
    if not knots:
        raise ValueError(f"{name}:{reader.line_num}: no data rows after the header")
    return knots


class Sequence(Trajectory):
    """Segments one after another, each on its own clock.

    Segment ``i`` begins when segment ``i-1`` ends: its local time is ``t`` minus the sum of the
    earlier segments' ``end_s``. A segment's own ``start_s`` is therefore a rest at its first
    point before it moves (and a :class:`CsvTrack` keeps its recorded start time as such a rest
    unless offset). Every segment but the last must end. Where a segment ends away from the
    next one's start, the tip jumps: the pen was lifted.
    """

    def __init__(self, segments: Iterable[Trajectory]) -> None:
        flat: list[Trajectory] = []
        for segment in segments:
            flat.extend(segment.segments if isinstance(segment, Sequence) else [segment])
        if not flat:
            raise ValueError("a sequence needs at least one segment")
        begins = [0.0]
        for i, segment in enumerate(flat[:-1]):
            end = segment.end_s
            if end is None:
                raise ValueError(f"segment {i} never ends, so nothing after it would run")
            if end < 0:
                raise ValueError(f"segment {i} ends before its own time 0 ({end} s)")
            begins.append(begins[-1] + end)
        self.segments: tuple[Trajectory, ...] = tuple(flat)
        self.begins_s: tuple[float, ...] = tuple(begins)  # when each segment's clock starts

    @property
    def start_s(self) -> float:
        return self.segments[0].start_s

    @property
    def duration_s(self) -> float | None:
        last_end = self.segments[-1].end_s
        return None if last_end is None else self.begins_s[-1] + last_end - self.start_s

    def position_mm(self, t: float) -> PointMM:
        i = max(bisect_right(self.begins_s, t) - 1, 0)
        return self.segments[i].position_mm(t - self.begins_s[i])

    def sample_mm(self, times_s: ArrayLike) -> NDArray[np.float64]:
        ts = np.asarray(times_s, dtype=np.float64).reshape(-1)
        which = np.maximum(np.searchsorted(self.begins_s, ts, side="right") - 1, 0)
        out = np.empty((ts.size, 2), dtype=np.float64)
        for i, (segment, begin) in enumerate(zip(self.segments, self.begins_s, strict=True)):
            mask = which == i
            if mask.any():
                out[mask] = segment.sample_mm(ts[mask] - begin)
        return out

    def __repr__(self) -> str:
        return f"Sequence({list(self.segments)!r})"


class _Moved(Trajectory):
    """Another trajectory delayed by ``dt_s`` and translated by ``(dx_mm, dy_mm)``."""

    def __init__(self, inner: Trajectory, dt_s: float, dx_mm: float, dy_mm: float) -> None:
        if isinstance(inner, _Moved):  # fold chains of offsets and shifts into one
            dt_s, dx_mm, dy_mm = inner.dt_s + dt_s, inner.dx_mm + dx_mm, inner.dy_mm + dy_mm
            inner = inner.inner
        _within_reach("shift x", dx_mm)
        _within_reach("shift y", dy_mm)
        self.inner: Trajectory = inner
        self.dt_s: float = dt_s
        self.dx_mm: float = dx_mm
        self.dy_mm: float = dy_mm

    @property
    def start_s(self) -> float:
        return self.inner.start_s + self.dt_s

    @property
    def duration_s(self) -> float | None:
        return self.inner.duration_s

    def position_mm(self, t: float) -> PointMM:
        x, y = self.inner.position_mm(t - self.dt_s)
        return (x + self.dx_mm, y + self.dy_mm)

    def sample_mm(self, times_s: ArrayLike) -> NDArray[np.float64]:
        ts = np.asarray(times_s, dtype=np.float64).reshape(-1)
        moved: NDArray[np.float64] = self.inner.sample_mm(ts - self.dt_s) + np.array(
            [self.dx_mm, self.dy_mm]
        )
        return moved

    def __repr__(self) -> str:
        return f"{self.inner!r}.offset({self.dt_s}).shift({self.dx_mm}, {self.dy_mm})"


# ====================================================================== tip motion sensor

_T_US = struct.Struct("<q")
_TWO_WORDS = struct.Struct("<QQ")
_TWO_PI: Final = 2.0 * math.pi
_INV_2_53: Final = 2.0**-53


class TipSensor:
    """What the pen's motion sensor reports: the true position, noisy, quantised, in whole µm.

    Each axis gets Gaussian noise of standard deviation ``noise_um`` and is then rounded to the
    nearest multiple of ``resolution_um`` (ties to even, Python's ``round``). The resolution is
    a whole number of µm because the wire carries whole µm.

    The noise is a pure function of ``(seed, round(t * 1e6))``: the same instant gives the same
    reading however often and in whatever order it is asked, so a test may re-read the past and
    a replayed session reports what the original did. It is counter-based: BLAKE2b of the seed
    and the microsecond gives two uniform 53-bit numbers, and Box-Muller turns them into the x
    and y noise. It was chosen by a one-off measurement of the noise pair per reading (CPython
    3.11, x86-64, one run): BLAKE2b 1.3 µs, a pure-Python splitmix64 2.1 µs,
    ``random.Random(hash((seed, t_us)))`` 6.6 µs, numpy Philox with the time as its counter
    16 µs, ``np.random.default_rng([seed, t_us])`` 19 µs (building a generator per instant is
    what costs). BLAKE2b is also fixed by its specification, so a seed means the same noise on
    every platform and Python version (up to the last bit of ``math.log``/``cos``).
    """

    def __init__(
        self,
        trajectory: Callable[[float], tuple[float, float]],
        noise_um: float = 5.0,
        resolution_um: float = 10.0,
        seed: int = 0,
    ) -> None:
        self.trajectory = trajectory
        self.noise_um = _finite("noise_um", noise_um)
        if self.noise_um < 0:
            raise ValueError(f"noise_um must be >= 0, got {self.noise_um}")
        resolution = _finite("resolution_um", resolution_um)
        if resolution < 1 or not resolution.is_integer():
            raise ValueError(f"resolution_um must be a whole number of µm >= 1, got {resolution}")
        self.resolution_um = int(resolution)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        self.seed = seed
        self._hash = hashlib.blake2b(str(seed).encode(), digest_size=16, person=b"pen-tip-sensor")

    @property
    def duration_s(self) -> float | None:
        """The trajectory's, so the sensor can stand wherever a trajectory is expected."""
        duration = getattr(self.trajectory, "duration_s", None)
        return duration if isinstance(duration, int | float) else None

    def noise(self, t: float) -> tuple[float, float]:
        """The standard-normal pair (x, y) for the microsecond containing ``t``."""
        h = self._hash.copy()
        h.update(_T_US.pack(round(t * 1e6)))
        a, b = _TWO_WORDS.unpack(h.digest())
        u1 = ((a >> 11) + 1) * _INV_2_53  # (0, 1]: log() is finite
        u2 = (b >> 11) * _INV_2_53
        r = math.sqrt(-2.0 * math.log(u1))
        return (r * math.cos(_TWO_PI * u2), r * math.sin(_TWO_PI * u2))

    def reading(self, t: float) -> tuple[int, int]:
        """The sensor's report at ``t`` seconds since boot, in whole µm."""
        x, y = self.trajectory(t)
        if self.noise_um:
            zx, zy = self.noise(t)
            x += self.noise_um * zx
            y += self.noise_um * zy
        step = self.resolution_um
        return (round(x / step) * step, round(y / step) * step)

    position = reading

    def __call__(self, t: float) -> tuple[int, int]:
        return self.reading(t)

    def __repr__(self) -> str:
        return (
            f"TipSensor({self.trajectory!r}, noise_um={self.noise_um}, "
            f"resolution_um={self.resolution_um}, seed={self.seed})"
        )


# ====================================================================== specs

_COMMON_KEYS: Final = frozenset({"kind", "offset_s", "shift_mm"})
_KIND_KEYS: Final[dict[str, tuple[frozenset[str], frozenset[str]]]] = {
    "raster": (
        frozenset({"width_mm", "height_mm", "glide_mm_s", "tip_width_mm", "overlap"}),
        frozenset({"origin_mm", "start_s", "passes", "direction"}),
    ),
    "circle": (
        frozenset({"center_mm", "radius_mm", "speed_mm_s"}),
        frozenset({"start_s", "turns"}),
    ),
    "stationary": (frozenset({"x_mm", "y_mm"}), frozenset({"duration_s"})),
    "csv": (frozenset({"path"}), frozenset()),
    "sequence": (frozenset({"segments"}), frozenset()),
}


class _Spec:
    """Typed reads from one spec dict; every failure names where in the spec it is."""

    def __init__(self, where: str, spec: Mapping[str, object]) -> None:
        self.where = where
        self.spec = spec

    def fail(self, problem: str) -> ValueError:
        return ValueError(f"{self.where}: {problem}")

    def number(self, key: str, default: float | None = None) -> float:
        value = self.spec.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(f"{key} must be a number, got {value!r}")
        return float(value)

    def optional_number(self, key: str) -> float | None:
        return self.number(key) if key in self.spec else None

    def whole(self, key: str, default: int) -> int:
        value = self.spec.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(f"{key} must be a whole number, got {value!r}")
        return value

    def text(self, key: str, default: str | None = None) -> str:
        value = self.spec.get(key, default)
        if not isinstance(value, str):
            raise self.fail(f"{key} must be a string, got {value!r}")
        return value

    def path(self, key: str) -> Path:
        value = self.spec[key]
        if not isinstance(value, str | os.PathLike):
            raise self.fail(f"{key} must be a file path, got {value!r}")
        return Path(value)

    def point(self, key: str, default: PointMM | None = None) -> PointMM:
        value = self.spec.get(key, default)
        if (
            not isinstance(value, list | tuple)
            or len(value) != 2
            or any(isinstance(v, bool) or not isinstance(v, int | float) for v in value)
        ):
            raise self.fail(f"{key} must be two numbers [x, y], got {value!r}")
        return (float(value[0]), float(value[1]))


def trajectory_from_spec(
    spec: Mapping[str, object],
    *,
    base_dir: str | os.PathLike[str] | None = None,
    name: str = "trajectory",
) -> Trajectory:
    """Build a trajectory from a plain dict, as found in a TOML scenario or on a command line.

    ``spec["kind"]`` is one of ``raster``, ``circle``, ``stationary``, ``csv`` or ``sequence``;
    the other keys are the constructor's arguments, with the same names and defaults
    (``center_mm``/``origin_mm`` as ``[x, y]``; ``csv`` takes ``path``, relative to
    ``base_dir`` when given; ``sequence`` takes ``segments``, a list of specs). Every kind also
    takes ``offset_s`` and ``shift_mm`` (``[dx, dy]``), applied last. Unknown kinds, unknown or
    missing keys, wrongly typed values and values the constructor refuses all raise
    ``ValueError`` starting with ``name`` and the place in the spec, e.g.
    ``trajectory (sequence) segments[1] (circle): radius_mm must be > 0, got -1.0``.
    """
    return _build(spec, name, base_dir)


def _build(spec: object, where: str, base_dir: str | os.PathLike[str] | None) -> Trajectory:
    if not isinstance(spec, Mapping):
        raise ValueError(f"{where}: a trajectory spec must be a table/dict, got {spec!r}")
    known = ", ".join(sorted(_KIND_KEYS))
    if "kind" not in spec:
        raise ValueError(f"{where}: no 'kind'; known kinds: {known}")
    kind = spec["kind"]
    if not isinstance(kind, str) or kind not in _KIND_KEYS:
        raise ValueError(f"{where}: unknown kind {kind!r}; known kinds: {known}")
    where = f"{where} ({kind})"
    required, optional = _KIND_KEYS[kind]
    allowed = required | optional | _COMMON_KEYS
    unknown = sorted(str(k) for k in spec if k not in allowed)
    if unknown:
        keys = "key" if len(unknown) == 1 else "keys"
        raise ValueError(
            f"{where}: unknown {keys} {_quoted(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )
    missing = sorted(required - set(spec))
    if missing:
        keys = "key" if len(missing) == 1 else "keys"
        raise ValueError(f"{where}: missing {keys} {_quoted(missing)}")
    s = _Spec(where, spec)

    # Read and type-check every value first, then construct: a constructor's complaint about a
    # value ("overlap must be in [0, 1)") is then prefixed with where the value came from.
    make: Callable[[], Trajectory]
    if kind == "raster":
        raster_args = (
            s.number("width_mm"),
            s.number("height_mm"),
            s.number("glide_mm_s"),
            s.number("tip_width_mm"),
            s.number("overlap"),
            s.point("origin_mm", (0.0, 0.0)),
            s.number("start_s", 0.0),
            s.whole("passes", 1),
            s.text("direction", "x"),
        )
        make = partial(Raster, *raster_args)
    elif kind == "circle":
        circle_args = (
            s.point("center_mm"),
            s.number("radius_mm"),
            s.number("speed_mm_s"),
            s.number("start_s", 0.0),
            s.optional_number("turns"),
        )
        make = partial(Circle, *circle_args)
    elif kind == "stationary":
        still_args = (s.number("x_mm"), s.number("y_mm"), s.optional_number("duration_s"))
        make = partial(Stationary, *still_args)
    elif kind == "csv":
        path = s.path("path")
        if base_dir is not None and not path.is_absolute():
            path = Path(base_dir) / path
        make = partial(CsvTrack.load, path)
    else:
        items = spec["segments"]
        if not isinstance(items, list | tuple) or not items:
            raise s.fail(f"segments must be a non-empty list of specs, got {items!r}")
        parts = [_build(item, f"{where} segments[{i}]", base_dir) for i, item in enumerate(items)]
        make = partial(Sequence, parts)
    dt_s = s.optional_number("offset_s")
    shift = s.point("shift_mm") if "shift_mm" in spec else None

    try:
        trajectory: Trajectory = make()
        if dt_s is not None:
            trajectory = trajectory.offset(dt_s)
        if shift is not None:
            trajectory = trajectory.shift(*shift)
    except ValueError as e:
        raise s.fail(str(e)) from None
    except OSError as e:  # a csv path that cannot be read: one line, like every other mistake
        raise s.fail(f"cannot read {e.filename}: {e.strerror}") from None
    return trajectory


def _quoted(keys: list[str]) -> str:
    return ", ".join(repr(k) for k in keys)


def _number(text: str) -> float | int:
    value = float(text)
    return int(value) if value.is_integer() and "." not in text else value


def parse_trajectory(text: str) -> Trajectory:
    """A trajectory from one line of text, as on ``pen-sim --trajectory`` or in a ``sim://`` URL.

    Either the path of a CSV track (``t_s,x_mm,y_mm``) or ``KIND:key=value,...`` with the keys
    of :func:`trajectory_from_spec`, e.g. ``raster:width_mm=40,height_mm=30,glide_mm_s=20,
    tip_width_mm=8,overlap=0.25``. Raises ``ValueError`` with a one-line reason.
    """
    if ":" not in text or Path(text).exists():
        return trajectory_from_spec({"kind": "csv", "path": text})
    kind, _, rest = text.partition(":")
    spec: dict[str, object] = {"kind": kind}
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"expected key=value, got {item!r}")
        try:
            spec[key.strip()] = _number(value.strip())
        except ValueError:
            raise ValueError(f"{key.strip()}: expected a number, got {value.strip()!r}") from None
    return trajectory_from_spec(spec)
