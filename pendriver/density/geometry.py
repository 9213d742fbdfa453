"""Where the needles are: pen cartridges and rollers.

A needle layout is an ``(n, 2)`` float64 array of ``(x, y)`` offsets in mm from the tip
position, in the pen's own frame (heading 0 means the pen frame's x axis is the world's x axis).
The kernel quantises these to whole µm (the wire's resolution) before use.

Rollers are modelled as a drum of diameter ``d`` rolling without slip along the trajectory.
Needles sit in ``needles_around`` rows equally spaced around the circumference; each row holds
``rows`` needles spread evenly across the drum's width. A row punctures when it reaches the
bottom of the drum, which happens once every ``pitch = π·d / needles_around`` mm of travelled
distance. So a roller is a pen whose "strokes" are set by distance instead of time: the k-th
row touches down when the cumulative path length reaches ``phase + k·pitch`` (k = 0, 1, ...),
its needles lie on the axle line (perpendicular to the direction of travel), and the heading is
the direction of travel. :func:`roller_strokes` turns a track into exactly that: stroke times
and a track with a heading column, ready for the same kernel as a pen.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "Roller",
    "circle",
    "custom",
    "from_cartridge",
    "parse_needle_grid",
    "roller_strokes",
    "spiral",
    "square_grid",
]

_GOLDEN_ANGLE = math.pi * (3.0 - math.sqrt(5.0))


def _layout(points: ArrayLike) -> NDArray[np.float64]:
    arr = np.array(points, dtype=np.float64, copy=True).reshape(-1, 2)
    if not np.all(np.isfinite(arr)):
        raise ValueError("needle positions must be finite")
    return arr


def circle(n: int, radius_mm: float, phase_rad: float = 0.0) -> NDArray[np.float64]:
    """``n`` needles equally spaced on a circle (n = 1 puts one needle at the centre)."""
    if n < 1:
        raise ValueError("a layout needs at least one needle")
    if n == 1:
        return np.zeros((1, 2))
    a = phase_rad + 2.0 * math.pi * np.arange(n) / n
    return _layout(np.column_stack((radius_mm * np.cos(a), radius_mm * np.sin(a))))


def square_grid(rows: int, cols: int, pitch_mm: float) -> NDArray[np.float64]:
    """A ``rows × cols`` square grid at ``pitch_mm``, centred on the tip, row-major from -y."""
    if rows < 1 or cols < 1:
        raise ValueError("a layout needs at least one needle")
    xs = (np.arange(cols) - (cols - 1) / 2.0) * pitch_mm
    ys = (np.arange(rows) - (rows - 1) / 2.0) * pitch_mm
    gx, gy = np.meshgrid(xs, ys)
    return _layout(np.column_stack((gx.ravel(), gy.ravel())))


def spiral(n: int, radius_mm: float) -> NDArray[np.float64]:
    """``n`` needles on a Fermat (sunflower) spiral filling a disc of ``radius_mm``.

    The golden-angle spiral spreads needles evenly over the disc, like round nano-cartridges.
    """
    if n < 1:
        raise ValueError("a layout needs at least one needle")
    k = np.arange(n)
    r = radius_mm * np.sqrt((k + 0.5) / n)
    a = k * _GOLDEN_ANGLE
    return _layout(np.column_stack((r * np.cos(a), r * np.sin(a))))


def custom(points_mm: Iterable[tuple[float, float]]) -> NDArray[np.float64]:
    """Any list of ``(x, y)`` mm pairs."""
    arr = _layout(list(points_mm))
    if len(arr) == 0:
        raise ValueError("a layout needs at least one needle")
    return arr


def from_cartridge(needles_mm: tuple[tuple[float, float], ...]) -> NDArray[np.float64]:
    """The layout a pen reports (``CartridgeInfo.needles_mm``)."""
    return custom(needles_mm)


@dataclass(frozen=True, slots=True)
class Roller:
    """A derma roller: drum diameter and width in mm, needles across and around."""

    diameter_mm: float
    width_mm: float
    rows: int
    needles_around: int

    def __post_init__(self) -> None:
        if not (self.diameter_mm > 0 and self.width_mm >= 0):
            raise ValueError("a roller needs a positive diameter and a non-negative width")
        if self.rows < 1 or self.needles_around < 1:
            raise ValueError("a roller needs at least one needle row and one needle around")

    @property
    def pitch_mm(self) -> float:
        """Travel between two rows touching down: π·d / needles_around."""
        return math.pi * self.diameter_mm / self.needles_around

    def needles(self) -> NDArray[np.float64]:
        """One touching-down row: along the axle, i.e. the pen frame's y axis."""
        ys = (np.arange(self.rows) + 0.5) * (self.width_mm / self.rows) - self.width_mm / 2.0
        return _layout(np.column_stack((np.zeros(self.rows), ys)))


def roller_strokes(
    roller: Roller, track: ArrayLike, phase_mm: float = 0.0
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Stroke times and a ``(time, x, y, heading)`` track for a roller rolled along ``track``.

    ``track`` is ``(m, 3)``: time s, x mm, y mm. Touch-downs are at cumulative path length
    ``phase_mm + k·pitch``; their times are linearly interpolated in distance. The heading of
    each sample is the direction of the segment leaving it (unwrapped, so interpolation never
    turns the long way); a sample where the roller stands still keeps the previous heading.
    """
    arr = np.asarray(track, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] < 3 or len(arr) < 1:
        raise ValueError("track must be (m, 3): time, x, y")
    t, x, y = arr[:, 0], arr[:, 1], arr[:, 2]
    dx, dy = np.diff(x), np.diff(y)
    seg = np.hypot(dx, dy)
    dist = np.concatenate(([0.0], np.cumsum(seg)))
    pitch = roller.pitch_mm
    if dist[-1] < phase_mm:
        times = np.empty(0)
    else:
        k = np.arange(math.floor((dist[-1] - phase_mm) / pitch) + 1)
        d = phase_mm + k * pitch
        d = d[d <= dist[-1]]
        # np.interp needs strictly increasing distances: drop standing-still samples.
        keep = np.concatenate(([True], seg > 0))
        times = np.interp(d, dist[keep], t[keep]) if keep.sum() > 1 else np.full(len(d), t[0])
    heading = np.arctan2(dy, dx)
    moving = seg > 0
    if not moving.any():
        heading = np.zeros(len(seg))
    else:
        # carry the last moving direction over standing-still segments
        idx = np.where(moving, np.arange(len(seg)), -1)
        idx = np.maximum.accumulate(idx)
        idx[idx < 0] = int(np.argmax(moving))
        heading = heading[idx]
    head = np.concatenate((heading, heading[-1:])) if len(heading) else np.zeros(1)
    head = np.unwrap(head)
    return np.asarray(times, dtype=np.float64), np.column_stack((t, x, y, head))


def parse_needle_grid(text: str) -> NDArray[np.float64]:
    """``ROWSxCOLS:PITCH_MM`` (e.g. ``4x4:0.6``) as a square needle layout; ValueError with the
    expected form otherwise (a capture without a CARTRIDGE message needs the layout typed in)."""
    try:
        shape, _, pitch = text.partition(":")
        rows, cols = (int(v) for v in shape.lower().split("x"))
        pitch_mm = float(pitch)
        if not (math.isfinite(pitch_mm) and pitch_mm > 0):
            raise ValueError
        return square_grid(rows, cols, pitch_mm)
    except ValueError:
        raise ValueError(
            f"needles must be ROWSxCOLS:PITCH_MM (e.g. 4x4:0.6), got {text!r}"
        ) from None
