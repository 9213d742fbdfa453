"""The puncture-density kernel: stamp every needle of every stroke and count per cell.

Inputs are plain arrays: stroke times (s), a track of position samples ``(m, 3)`` or
``(m, 4)``: time s, x mm, y mm and optionally the pen's heading in radians, and a needle
layout ``(n, 2)`` in mm (see :mod:`pendriver.density.geometry`).

Arithmetic contract
-------------------
The kernel must give *exactly* the counts of the pure-Python reference
(:mod:`pendriver.density.reference`), cell for cell. A puncture on a cell boundary goes one way
or the other depending on the last bit of a float, so the contract is stated operation by
operation. The few float steps are IEEE-754 double operations, each correctly rounded (no fused
multiply-add, no BLAS), which numpy's elementwise ufuncs and Python's floats both perform; every
step after them is integer arithmetic, which is exact in any order.

1. Track and needle positions are quantised to whole µm, the wire's resolution:
   ``X = rint(x_mm * 1000.0)`` (round half to even, as ``np.rint`` and ``round`` do). A heading
   becomes whole steps of 1/16384 turn: ``H = rint(h_rad * (16384 / 2π))``.
2. For a stroke at time ``t``: ``i`` is the last sample with ``T[i] <= t`` (``bisect_right`` -
   1), clamped to ``[0, m-2]``; ``f = (t - T[i]) / (T[i+1] - T[i])`` clamped to ``[0, 1]``
   (no extrapolation: before the first sample or after the last the tip rests there).
3. Tip: ``x = X[i] + rint(f * (X[i+1] - X[i]))``, same for y: whole µm again.
4. Heading (when given): the step turned between the samples the shorter way round,
   ``d = ((H[i+1] - H[i] + 8192) mod 16384) - 8192``; the stroke's step
   ``q = (H[i] + rint(f * d)) mod 16384``; ``c = math.cos(q * (2π / 16384))``, ``s`` the same
   with ``math.sin`` (the C library's functions in both implementations; numpy's SIMD ``cos``
   may differ by an ulp). Needle offset: ``dx = rint(c*nx - s*ny)``,
   ``dy = rint(s*nx + c*ny)``, products first, then the sum/difference. Without a heading the
   offset is ``(nx, ny)``, which is what step ``q = 0`` (``c = 1, s = 0``) gives too.
5. Puncture at ``(x + dx, y + dy)`` µm; cell ``ix = (x + dx - ox) // cell`` (floor), same for
   y. Cells outside ``[0, nx) × [0, ny)`` count as *outside*.

The heading resolution, 1/16384 turn (0.022°), moves a needle 1.5 mm from the axis by at most
0.3 µm, below the wire's 1 µm position step and far below what a pen's motion sensor resolves.
Because step 5 is integer arithmetic, translating the track and the grid origin by the same
whole number of µm (or the track alone by whole cells) translates the map exactly.

Speed
-----
Everything per puncture is integer work on 1-D arrays of one block of strokes (16384 at a time,
so temporaries stay in cache), one needle at a time: numpy iterates broadcast operands several
times slower than plain contiguous ones, and a fresh array the size of the whole track costs
more in page faults than the arithmetic on it.

* Per stroke: the interpolation index is computed for a uniformly sampled track,
  ``(t - T[0]) / dt``, and checked through ``f`` itself (two reductions: ``0 <= f < 1`` holds
  only for the right segment); only strokes where that guess is wrong (jitter, gaps, before or
  after the track) are searched with ``np.searchsorted``. The track's columns are quantised per
  block, for the samples it needs, already moved to the padded grid's corner (whole µm plus
  whole µm).
* The grid is padded by ``P`` cells on each side, enough for the needles' reach, and each tip
  is clamped (per stroke) to at most one reach outside the grid. A clamped stroke was wholly
  outside and stays wholly outside, so no per-puncture bounds test is needed and every value
  stays non-negative. Whatever lands in the padding is *outside*. A tip lies between its two
  samples, so a block whose samples are all within the bounds skips the clamp.
* 1-D gathers use ``mode="wrap"``: the indices are valid by construction (so wrapping never
  happens), and numpy's default ("raise") goes through a buffered path when given ``out``
  (3.8 ns an element here against 0.75; "clip" measured 0.9-1.3).
* Without a heading (telemetry has none): with the tip at ``Q·cell + r``, a needle's cell is
  ``Q + a + [r >= cell - b]`` for its offset ``a·cell + b``, so the remainders ``(rx, ry)`` of a
  stroke fall in one of at most ``(n+1)²`` classes, each with a fixed pattern of cell offsets.
  A stroke is then its base cell and its class, and a batch is counted whichever of two ways
  costs less (:mod:`~pendriver.density.stroke_classes`): per puncture, one gather from the
  class pattern and one add; or, for many strokes over a grid few times their number, through
  the strokes' histogram per (class, cell), prefix sums over the classes and at most nine
  shifted adds of the grid per needle, which costs nothing per puncture.
* With a heading: the offsets of a heading step depend on nothing else, so they are computed
  once per step, lazily in pages of 64 steps, into a table ``(2·n, 16384)`` (a call with
  fewer strokes than the missing pages would hold computes its own strokes' offsets). The floor
  division of step 5 is a multiply and a shift (``v // cell == (v * M) >> s`` for
  ``0 <= v < V`` with ``M = ceil(2**s / cell)`` and ``2**s >= V * cell``: Granlund and
  Montgomery's round-up method); the table holds offsets already times ``M``, so a puncture
  costs a gather, an add and a shift per axis and ``iy * w + ix``.
* Flat indices are collected and counted with one ``np.bincount`` per 256 Ki punctures (no
  ``minlength``: only the prefix of the grid that was hit is allocated and added).

A call with only a few strokes (a live chunk) does the per-stroke steps in plain Python. Without
a heading each stroke is then a gather, an add and a scatter of its class's distinct cells
through a view of the grid (the values written also answer the over-treatment check); with a
heading the punctures are counted with one ``np.add.at``. A few small numpy calls in all: at
this size their fixed cost (about a microsecond each here) is what a chunk costs.
"""

from __future__ import annotations

import math
import operator
from bisect import bisect_right
from itertools import islice
from typing import Literal, get_args

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .grid import UM_PER_MM, Grid
from .stroke_classes import StrokeClasses

__all__ = [
    "HEADING_STEPS",
    "Binning",
    "DensityKernel",
    "density_counts",
    "stroke_times_from_counts",
    "stroke_times_uniform",
    "unwrap_counter",
]

Binning = Literal["auto", "punctures", "histogram"]

HEADING_STEPS = 1 << 14
"""Heading resolution: steps per turn (step 1 of the arithmetic contract)."""
STEPS_PER_RAD = HEADING_STEPS / math.tau
RAD_PER_STEP = math.tau / HEADING_STEPS  # exact: a power-of-two division
_HALF_TURN = HEADING_STEPS // 2
_STEP_MASK = HEADING_STEPS - 1
_PAGE_STEPS = 64  # heading steps whose offsets are computed together
_PAGES = HEADING_STEPS // _PAGE_STEPS

_MAX_ABS_MM = 1e9  # 1000 km: keeps every µm value far inside float64's exact integer range
_MAX_ABS_HEADING = 1e9  # radians; H stays an exact integer in float64
_MAX_NEEDLE_MM = 1000.0
_MAX_PADDED_UM = 1 << 30  # (v * M) must stay inside int64: see the class docstring
_MAX_PADDING_CELLS = 1 << 18  # padding allowed beyond 4x the grid: 2 MiB of int64
_BIN_PUNCTURES = 1 << 18  # flat indices collected before one bincount
_CLASS_RUN = 1 << 20  # strokes whose bases and classes are kept to choose how to count them
_STROKE_BLOCK = 1 << 14  # strokes whose per-stroke work is done together (128 KiB arrays)
_FEW_STROKES = 4  # at most this many strokes per call: the plain-Python per-stroke path


def stroke_times_uniform(start_s: float, stop_s: float, rate_hz: float) -> NDArray[np.float64]:
    """Strokes at ``start_s + k / rate_hz`` for every k with a time before ``stop_s``."""
    if not rate_hz > 0:
        raise ValueError(f"stroke rate must be positive, got {rate_hz!r} Hz")
    n = max(0, math.ceil((stop_s - start_s) * rate_hz))
    times = start_s + np.arange(n, dtype=np.float64) / rate_hz
    return times[times < stop_s]


def unwrap_counter(counts: NDArray[np.int64]) -> NDArray[np.int64]:
    """The u32 stroke counter made monotonic: a wrap-around continues, a reset to 0 (the
    pen rebooted) adds nothing, so :func:`stroke_times_from_counts` never sees it go back."""
    if counts.size < 2:
        return counts
    steps = np.diff(counts)
    # A drop of more than half the range is a wrap; any other drop is a reset (a reboot),
    # which adds no strokes.
    steps = np.maximum(np.where(steps < -(1 << 31), steps + (1 << 32), steps), 0)
    return np.concatenate(([counts[0]], counts[0] + np.cumsum(steps))).astype(np.int64)


def stroke_times_from_counts(times_s: ArrayLike, counts: ArrayLike) -> NDArray[np.float64]:
    """Stroke times from a cumulative stroke counter sampled in telemetry.

    Between two samples the counter rose by ``n``; those ``n`` strokes are spread evenly over
    the interval, the last one at the later sample: ``t0 + (j + 1) / n · (t1 - t0)``. The
    counter must be non-decreasing (unwrap a wrapping counter first); strokes before the first
    sample are unknown and not invented.
    """
    t = np.asarray(times_s, dtype=np.float64)
    c = np.asarray(counts, dtype=np.int64)
    if t.shape != c.shape or t.ndim != 1:
        raise ValueError("times and counts must be 1-D arrays of the same length")
    if len(t) < 2:
        return np.empty(0)
    n = np.diff(c)
    if np.any(n < 0):
        raise ValueError("the stroke counter went backwards; unwrap it first")
    interval = np.repeat(np.arange(len(n)), n)
    total = int(n.sum())
    # j = index of the stroke within its interval
    starts = np.repeat(np.cumsum(n) - n, n)
    j = np.arange(total) - starts
    t0 = t[interval]
    return np.asarray(t0 + (j + 1) / n[interval] * (t[interval + 1] - t0), dtype=np.float64)


def _needles_um(needles_mm: ArrayLike) -> NDArray[np.float64]:
    nd = np.asarray(needles_mm, dtype=np.float64).reshape(-1, 2)
    if len(nd) == 0 or not np.all(np.abs(nd) <= _MAX_NEEDLE_MM):
        raise ValueError(
            f"need at least one needle, every position finite and within {_MAX_NEEDLE_MM:g} mm"
        )
    return np.rint(nd * float(UM_PER_MM))


def _track_error() -> ValueError:
    return ValueError(
        "track values must be finite, positions within 1e9 mm and headings within 1e9 rad"
    )


class _Track:
    """A track prepared for interpolation (steps 1-4 of the contract, per stroke).

    The whole track is checked once; the quantised columns and per-segment differences are
    computed per block of strokes, for just the samples those strokes fall between, so that no
    temporary is larger than a block (fresh memory the size of the whole track costs more in
    page faults than the arithmetic on it).
    """

    __slots__ = ("_rate", "_start", "arr", "m", "t", "t_next")

    def __init__(self, track: ArrayLike) -> None:
        arr = np.asarray(track, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] not in (3, 4) or len(arr) < 1:
            raise ValueError("track must be (m, 3) or (m, 4): time s, x mm, y mm[, heading rad]")
        if len(arr) == 1:  # one sample: the tip rests there
            arr = np.concatenate((arr, arr))
            arr[1, 0] += 1.0
        t = arr[:, 0]
        # min/max propagate NaN, which fails every comparison: caught here too. One pair of
        # reductions over the whole (contiguous) array settles the usual case; only a track
        # that fails it is looked at column by column.
        limit = min(_MAX_ABS_MM, _MAX_ABS_HEADING)
        if not (arr.min() > -limit and arr.max() < limit):
            pos = arr[:, 1:3]
            if not (pos.min() > -_MAX_ABS_MM and pos.max() < _MAX_ABS_MM):
                raise _track_error()
            if arr.shape[1] == 4:
                h = arr[:, 3]
                if not (h.min() > -_MAX_ABS_HEADING and h.max() < _MAX_ABS_HEADING):
                    raise _track_error()
            if not (np.isfinite(t[0]) and np.isfinite(t[-1])):
                raise _track_error()
        t = np.ascontiguousarray(t)  # one strided copy; the comparison then runs contiguous
        if not (t[1:] > t[:-1]).all():  # also catches NaN and infinities inside
            raise ValueError("track times must be strictly increasing")
        self.arr, self.t, self.m = arr, t, len(arr)
        self.t_next = self.t[1:]
        # Segment guess for a uniformly sampled track: (t - T[0]) * rate, nudged up by a
        # millionth of a sample so that a stroke exactly at a sample (common: the counter's
        # last stroke of an interval lands on the sample) is not guessed one segment early.
        self._rate = (self.m - 1) / (t[-1] - t[0])
        self._start = t[0] * self._rate - 1e-6

    def segments(
        self, strokes: NDArray[np.float64]
    ) -> tuple[NDArray[np.intp], NDArray[np.float64]]:
        """Step 2 per stroke: ``i`` and ``f``.

        ``i`` is computed for a uniformly sampled track and checked through ``f``; only where
        that guess is wrong (jitter, gaps, before or after the track) is it searched for, and
        ``f`` clamped to [0, 1] for those strokes.
        """
        t, t_next, m = self.t, self.t_next, self.m
        with np.errstate(over="ignore"):  # a stroke far outside the track: clamped below
            guess = strokes * self._rate
            guess -= self._start
        # A guess outside the track (a stroke before or after it) is clamped; two reductions
        # settle the usual case, where none is. (Infinities clamp; NaN would need inf - inf,
        # which the finite strokes and start exclude, but is mapped to 0 all the same: an
        # index must never be garbage, as a gather with mode="wrap" loops to bring it home.)
        if not (guess.min() >= 0.0 and guess.max() < m - 1):
            np.nan_to_num(guess, copy=False, nan=0.0)
            np.clip(guess, 0.0, m - 2, out=guess)
        i = guess.astype(np.intp)
        t0 = np.take(t, i, mode="wrap")
        f = np.subtract(strokes, t0, out=guess)
        t1 = np.take(t_next, i, mode="wrap")
        t1 -= t0
        f /= t1
        # The guess is right where T[i] <= t < T[i+1]: f >= 0 exactly when t >= T[i] (the sign
        # of a difference is exact), and f < 1 only when t < T[i+1] (rounding is monotonic).
        # A stroke with f rounded up to 1 though t < T[i+1] is merely searched again.
        if not (f.min() >= 0.0 and f.max() < 1.0):
            bad = np.flatnonzero((f < 0.0) | (f >= 1.0))  # few: indices, not masks
            fixed = np.searchsorted(t, strokes[bad], side="right")
            fixed -= 1
            np.clip(fixed, 0, m - 2, out=fixed)
            i[bad] = fixed
            t0 = t[fixed]
            f[bad] = np.clip((strokes[bad] - t0) / (t_next[fixed] - t0), 0.0, 1.0)
        return i, f

    def tips(
        self,
        strokes: NDArray[np.float64],
        out: NDArray[np.float64],
        shift: tuple[int, int],
        bounds: tuple[int, int, int],
    ) -> NDArray[np.intp] | None:
        """Tip positions in whole µm (as float), moved by ``shift`` and clamped to
        ``bounds`` ``(lo, hi_x, hi_y)``, into ``out`` ``(2, k)``; heading steps or None.

        The shift is added to the quantised samples (whole µm plus whole µm: exact), so the
        tips come out shifted with no per-stroke work; a tip lies between its two samples, so
        the per-stroke clamp is skipped when every sample in the block is within bounds."""
        i, f = self.segments(strokes)
        lo, hi = int(i.min()), int(i.max()) + 2
        if lo:
            i -= lo
        # The samples these strokes need, position columns (and heading) without the time.
        cols = np.array(self.arr[lo:hi, 1:].T, order="C")
        for row, pos, off, top in (
            (out[0], cols[0], shift[0], bounds[1]),
            (out[1], cols[1], shift[1], bounds[2]),
        ):
            pos *= float(UM_PER_MM)
            np.rint(pos, out=pos)
            pos += off
            np.take(pos[1:] - pos[:-1], i, out=row, mode="wrap")
            row *= f
            np.rint(row, out=row)
            row += np.take(pos, i, mode="wrap")
            if not (pos.min() >= bounds[0] and pos.max() <= top):
                np.clip(row, bounds[0], top, out=row)
        if len(cols) == 2:
            return None
        h = cols[2]
        h *= STEPS_PER_RAD
        q = np.rint(h, out=h).astype(np.intp)
        turned = q[1:] - q[:-1]
        turned += _HALF_TURN
        turned &= _STEP_MASK
        turned -= _HALF_TURN
        turn = np.take(turned, i, mode="wrap").astype(np.float64)
        turn *= f
        np.rint(turn, out=turn)
        steps: NDArray[np.intp] = turn.astype(np.intp)
        steps += np.take(q, i, mode="wrap")
        steps &= _STEP_MASK
        return steps


class DensityKernel:
    """A persistent count grid that strokes are stamped into, batch or chunk by chunk.

    ``add`` may be called with the strokes in any chunking; the counts are the same as one call
    with all of them (integer counting is associative). ``counts`` is a view into the padded
    grid: it changes as strokes are added.

    ``binning`` chooses how a batch of strokes without a heading is counted: ``"auto"`` (by
    a cost model), ``"punctures"`` or ``"histogram"`` (see
    :mod:`pendriver.density.stroke_classes`); the counts are the same either way. The two
    forced values are there for benchmarks and tests.
    """

    def __init__(self, grid: Grid, needles_mm: ArrayLike, *, binning: Binning = "auto") -> None:
        if binning not in get_args(Binning):
            raise ValueError(f"binning must be auto, punctures or histogram, not {binning!r}")
        self._binning = binning
        self.grid = grid
        needles = _needles_um(needles_mm)  # (n, 2) whole µm as float
        self._needles = needles
        self._n = len(needles)
        cell = grid.cell_um
        ny, nx = grid.shape
        # Reach: no offset, rotated or not, is longer than |nx| + |ny| in either axis.
        reach = int(np.abs(needles).sum(axis=1).max())
        # Cells of padding that hold every puncture of a stroke clamped as below.
        full = -(-(2 * reach + 1) // cell)
        span = (max(nx, ny) + 2 * full) * cell
        if span > _MAX_PADDED_UM:
            raise ValueError(
                f"grid plus needle reach is {span / 1e6:g} m across; at most "
                f"{_MAX_PADDED_UM / 1e6:g} m: use a coarser or smaller grid"
            )
        # v // cell == (v * M) >> s for 0 <= v < span (round-up method: 2**s >= span * cell).
        self._shift = s = (span * cell - 1).bit_length()
        self._mult = mult = -(-(1 << s) // cell)
        if (nx + 2 * full) * (ny + 2 * full) <= max(4 * nx * ny, _MAX_PADDING_CELLS):
            pad = full
            self._clamp: tuple[int, NDArray[np.int64], int] | None = None
        else:
            # Cells far smaller than the needles' reach: a one-cell ring, and each puncture's
            # cell clamped into it (two more passes), rather than a padding many times the grid.
            pad = 1
            lo = full - 1
            self._clamp = (
                lo,
                np.array([full + nx, full + ny], dtype=np.int64).reshape(2, 1, 1),
                lo * (nx + 3),
            )
        self._pad = pad
        self._w = w = nx + 2 * pad
        self._padded = np.zeros((ny + 2 * pad, w), dtype=np.int64)
        self._flat = self._padded.reshape(-1)
        ox, oy = grid.origin_um
        # Tip relative to the fully padded grid's corner, clamped to one reach (+1 µm) outside
        # the grid: a stroke beyond that is wholly outside, before and after the clamp.
        shift = full * cell
        hix, hiy = shift + nx * cell + reach, shift + ny * cell + reach
        # Whole µm as Python ints, used by both paths (numpy takes them as floats).
        self._to_padded = (shift - ox, shift - oy)
        self._bounds = (shift - reach - 1, hix, hiy)
        self._base = (needles.T.astype(np.int64) * mult)[:, :, None]  # (2, n, 1): step 0
        self._table: NDArray[np.int64] | None = None  # (2n, steps): offsets * M, lazily
        self._built = np.zeros(_PAGES, dtype=bool)  # pages of the table filled in
        self._classes = (
            StrokeClasses(self._needles.astype(np.int64), cell, w) if self._clamp is None else None
        )
        self._total = 0
        # Cells the last add touched when it was a few strokes: (base, cells) pairs, the
        # flat cells being base + cells. None: look at the whole grid.
        self._touched: list[tuple[int, NDArray[np.intp]]] | None = None
        self._touched_max = 0  # the most punctures in any of those cells
        self._bins = np.empty(0, dtype=np.intp)  # flat indices waiting for one bincount
        self._fill = 0

    @property
    def needles(self) -> int:
        return self._n

    @property
    def counts(self) -> NDArray[np.int64]:
        """Punctures per cell, ``(ny, nx)`` int64 (a live view)."""
        p = self._pad
        return self._padded[p:-p, p:-p]

    @property
    def total(self) -> int:
        """Every puncture added so far, inside the grid or not."""
        return self._total

    @property
    def outside(self) -> int:
        """Punctures that fell outside the grid (the padding around it)."""
        return self._total - int(self.counts.sum())

    def reset(self) -> None:
        self._padded[...] = 0
        self._total = 0
        self._touched = None

    def add(self, stroke_times: ArrayLike, track: ArrayLike) -> None:
        """Stamp all needles of the strokes at ``stroke_times`` along ``track``."""
        if isinstance(stroke_times, list) and len(stroke_times) <= _FEW_STROKES:
            few: list[float] = stroke_times
        else:
            strokes = np.asarray(stroke_times, dtype=np.float64).reshape(-1)
            if len(strokes) > _FEW_STROKES:
                self._add_many(strokes, track)
                return
            few = strokes.tolist()
        if few:
            self._add_few(few, track)

    def cells_over(self, limit: int) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
        """``(iy, ix)`` of the grid cells holding more than ``limit`` punctures, looked for
        only among the cells the last ``add`` touched when that was a few strokes (a live
        chunk), so that an alarm check costs next to nothing while nothing is over."""
        touched = self._touched
        if touched is None:
            return np.nonzero(self.counts > limit)  # type: ignore[return-value]
        if self._touched_max <= limit:
            return _NO_CELLS
        flat = self._flat
        idx = np.concatenate([cells + base for base, cells in touched])
        hot = np.unique(idx[flat[idx] > limit])
        iy, ix = np.divmod(hot, self._w)
        iy -= self._pad
        ix -= self._pad
        ny, nx = self.grid.shape
        inside = (iy >= 0) & (iy < ny) & (ix >= 0) & (ix < nx)
        return iy[inside], ix[inside]

    # -- heading table ---------------------------------------------------------------------

    def _stroke_offsets(self, steps: NDArray[np.intp]) -> NDArray[np.int64]:
        """Step 4's offsets (times ``M``) of each stroke, ``(2·n, strokes)``: gathered from
        the table, or computed for these strokes alone when filling the table's missing pages
        would cost more (a short batch whose heading wanders over many pages)."""
        wanted = np.zeros(_PAGES, dtype=bool)
        wanted[steps // _PAGE_STEPS] = True
        wanted &= ~self._built
        missing = np.flatnonzero(wanted).tolist()
        if len(missing) * _PAGE_STEPS > len(steps):
            return self._offsets_of(steps)
        return np.take(
            self._table_with(missing), steps, axis=1
        )  # 2-D take: "raise" is the fast mode here

    def _table_with(self, missing: list[int]) -> NDArray[np.int64]:
        """The ``(2·n, 16384)`` table of step 4's offsets times ``M``, with the ``missing``
        pages filled in (zeroed pages the OS maps lazily: memory only for headings met)."""
        table = self._table
        if table is None:
            table = self._table = np.zeros((2 * self._n, HEADING_STEPS), dtype=np.int64)
        if missing:
            cols = (np.array(missing)[:, None] * _PAGE_STEPS + np.arange(_PAGE_STEPS)).ravel()
            table[:, cols] = self._offsets_of(cols)
            self._built[missing] = True
        return table

    def _offsets_of(self, steps: NDArray[np.intp]) -> NDArray[np.int64]:
        """``(2·n, len(steps))``: step 4 for the given heading steps, times ``M``."""
        c, s = _cos_sin(steps)
        nx, ny = self._needles[:, 0:1], self._needles[:, 1:2]  # (n, 1) against (1, steps)
        out = np.empty((2 * self._n, len(steps)), dtype=np.int64)
        out[: self._n] = np.rint(c * nx - s * ny)
        out[self._n :] = np.rint(s * nx + c * ny)
        out *= self._mult
        return out

    # -- many strokes: numpy over blocks ---------------------------------------------------

    def _add_many(self, strokes: NDArray[np.float64], track: ArrayLike) -> None:
        if not np.isfinite(strokes).all():
            raise ValueError("stroke times must be finite")
        tr = _Track(track)
        if self._classes is not None and tr.arr.shape[1] == 3:
            self._add_classes(strokes, tr, self._classes)
        else:
            self._add_offsets(strokes, tr)
        self._total += len(strokes) * self._n
        self._touched = None

    def _add_offsets(self, strokes: NDArray[np.float64], tr: _Track) -> None:
        """With a heading (or cells far smaller than the needles' reach): per block of
        strokes, the tips, then per needle the offsets added and floored to cells."""
        k = len(strokes)
        sb = min(k, _STROKE_BLOCK)
        tip = np.empty((2, sb))
        self._bins = np.empty(max(sb, _BIN_PUNCTURES), dtype=np.intp)
        self._fill = 0
        for s0 in range(0, k, sb):
            # Per-stroke work (steps 2-4) in blocks of strokes, so temporaries stay in cache;
            # then one needle at a time over the block: 1-D arrays, no broadcasting (which
            # numpy iterates far slower than plain contiguous operands).
            ks = min(k - s0, sb)
            tip_f = tip[:, :ks]
            steps = tr.tips(strokes[s0 : s0 + ks], tip_f, self._to_padded, self._bounds)
            self._stamp_offsets(tip_f, steps)
        self._count(self._bins[: self._fill])

    def _add_classes(
        self, strokes: NDArray[np.float64], tr: _Track, classes: StrokeClasses
    ) -> None:
        """Without a heading: each stroke's base cell and class, per block of strokes; then,
        per run of up to ``_CLASS_RUN`` strokes, whichever way of counting them costs less
        (:mod:`pendriver.density.stroke_classes`)."""
        k = len(strokes)
        run = min(k, _CLASS_RUN)
        sb = min(run, _STROKE_BLOCK)
        tip = np.empty((2, sb))
        base_all = np.empty(run, dtype=np.intp)
        cls_all = np.empty(run, dtype=np.intp)
        for r0 in range(0, k, run):
            kr = min(k - r0, run)
            base, cls = base_all[:kr], cls_all[:kr]
            for s0 in range(0, kr, sb):
                ks = min(kr - s0, sb)
                tip_f = tip[:, :ks]
                tr.tips(strokes[r0 + s0 : r0 + s0 + ks], tip_f, self._to_padded, self._bounds)
                self._base_and_class(tip_f, base[s0 : s0 + ks], cls[s0 : s0 + ks], classes)
            binning = self._binning
            if binning != "punctures":
                lo = int(base.min())
                span = int(base.max()) + 1 - lo
                if binning == "histogram" or classes.histogram_cheaper(kr, span):
                    classes.stamp_histogram(self._flat, base, cls, lo, span)
                    continue
            self._bins = np.empty(max(sb * self._n, _BIN_PUNCTURES), dtype=np.intp)
            self._fill = 0
            for s0 in range(0, kr, sb):
                ks = min(kr - s0, sb)
                cells = self._segment(ks * self._n).reshape(self._n, ks)
                classes.stamp_punctures(base[s0 : s0 + ks], cls[s0 : s0 + ks], cells)
            self._count(self._bins[: self._fill])

    def _segment(self, size: int) -> NDArray[np.intp]:
        """The next ``size`` slots of the index buffer, counting it first if it is full."""
        if self._fill + size > len(self._bins):
            self._count(self._bins[: self._fill])
            self._fill = 0
        seg = self._bins[self._fill : self._fill + size]
        self._fill += size
        return seg

    def _base_and_class(
        self,
        tip: NDArray[np.float64],
        base: NDArray[np.intp],
        cls: NDArray[np.intp],
        classes: StrokeClasses,
    ) -> None:
        """Each stroke's base (flat index of its tip's cell) and class, into ``base`` and
        ``cls``. Cell and remainder by multiply-and-shift (integer divmod costs five times
        more)."""
        whole = tip.astype(np.intp)
        cells = whole * self._mult
        cells >>= self._shift
        rest = cells * self.grid.cell_um
        np.subtract(whole, rest, out=rest)
        np.take(classes.lut_x, rest[0], out=cls, mode="wrap")  # valid indices: see "Speed"
        cls += np.take(classes.lut_y, rest[1], mode="wrap")
        np.multiply(cells[1], self._w, out=base)
        base += cells[0]

    def _stamp_offsets(self, tip: NDArray[np.float64], steps: NDArray[np.intp] | None) -> None:
        """The general path: per needle, offsets (rotated by the heading table or not) plus
        the tip, all times ``M``; a shift floors each coordinate to its cell."""
        tip_m = tip.astype(np.int64)
        tip_m *= self._mult
        tx, ty = tip_m[0], tip_m[1]
        ks, n, s, w, clamp = len(tx), self._n, self._shift, self._w, self._clamp
        px = np.empty(ks, dtype=np.int64)
        py = np.empty(ks, dtype=np.int64)
        offsets = None if steps is None else self._stroke_offsets(steps)
        base = self._base
        for j in range(n):
            if offsets is None:
                np.add(tx, base[0, j, 0], out=px)
                np.add(ty, base[1, j, 0], out=py)
            else:
                np.add(offsets[j], tx, out=px)
                np.add(offsets[n + j], ty, out=py)
            px >>= s
            py >>= s
            if clamp is not None:
                np.clip(px, clamp[0], clamp[1][0, 0, 0], out=px)
                np.clip(py, clamp[0], clamp[1][1, 0, 0], out=py)
            seg = self._segment(ks)
            np.multiply(py, w, out=seg)
            seg += px
            if clamp is not None:
                seg -= clamp[2]

    def _count(self, flat: NDArray[np.intp]) -> None:
        if not flat.size:
            return
        hits = np.bincount(flat)
        self._flat[: len(hits)] += hits

    # -- a few strokes: the per-stroke steps in plain Python -------------------------------

    def _add_few(self, strokes: list[float], track: ArrayLike) -> None:
        arr = np.asarray(track, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] not in (3, 4) or len(arr) < 1:
            raise ValueError("track must be (m, 3) or (m, 4): time s, x mm, y mm[, heading rad]")
        cols: list[list[float]] = arr.T.tolist()
        self.add_few(strokes, *cols)

    def prepare_live(self) -> None:
        """Build the tables the few-strokes path uses now (a few ms for many needles), so
        that the first chunks of a pass do not pay for them."""
        if self._classes is not None:
            _ = self._classes.live_rows

    def add_few(
        self,
        strokes: list[float],
        t: list[float],
        x: list[float],
        y: list[float],
        heading: list[float] | None = None,
    ) -> None:
        """A few strokes along a track given as Python lists (a live chunk): the same counts
        as :meth:`add`, with steps 1-4 in plain Python per stroke and a couple of small numpy
        calls to stamp the needles."""
        if not strokes:
            return
        m = len(t)
        if not m or len(x) != m or len(y) != m or (heading is not None and len(heading) != m):
            raise ValueError("track columns must be non-empty and of the same length")
        # A sum is NaN or infinite if any term is: one check for all of them. Past it, min
        # and max (C loops over the lists) settle the ranges.
        total = sum(t) + sum(x) + sum(y) + sum(strokes) + (sum(heading) if heading else 0.0)
        lim = _MAX_ABS_MM
        if not (math.isfinite(total) and min(x) > -lim and max(x) < lim):
            raise _track_error()
        if not (min(y) > -lim and max(y) < lim):
            raise _track_error()
        if heading is not None and not (
            min(heading) > -_MAX_ABS_HEADING and max(heading) < _MAX_ABS_HEADING
        ):
            raise _track_error()
        if m == 1:  # one sample: the tip rests there
            t, x, y = [t[0], t[0] + 1.0], [x[0], x[0]], [y[0], y[0]]
            heading = None if heading is None else [heading[0], heading[0]]
        elif not all(map(operator.lt, t, islice(t, 1, None))):
            raise ValueError("track times must be strictly increasing")
        m2 = len(t) - 2
        lo, hix, hiy = self._bounds
        offx, offy = self._to_padded
        classes = self._classes if heading is None else None
        if classes is not None:
            # Without a heading each stroke is stamped as soon as its tip is known (one loop:
            # a live chunk's cost is mostly Python overhead).
            cell, w, flat = self.grid.cell_um, self._w, self._flat
            lut_x, lut_y, rows = classes.lut_x_list, classes.lut_y_list, classes.live_rows
            touched = []
            top = 0
        xs: list[int] = []
        ys: list[int] = []
        steps: list[int] = []
        for time_s in strokes:
            i = bisect_right(t, time_s) - 1
            i = 0 if i < 0 else (m2 if i > m2 else i)
            f = (time_s - t[i]) / (t[i + 1] - t[i])
            f = 0.0 if f < 0.0 else (1.0 if f > 1.0 else f)
            # Whole µm as Python ints: exact, and f * (an int below 2**53) is the same float
            # product as numpy's with the value as a float.
            x0 = round(x[i] * 1000.0)
            y0 = round(y[i] * 1000.0)
            px = x0 + round(f * (round(x[i + 1] * 1000.0) - x0)) + offx
            py = y0 + round(f * (round(y[i + 1] * 1000.0) - y0)) + offy
            px = lo if px < lo else (hix if px > hix else px)
            py = lo if py < lo else (hiy if py > hiy else py)
            if classes is not None:
                # The class's distinct cells (offsets from the stroke's lowest cell) and how
                # many needles land in each, read, added and written back through a view of
                # the grid that starts at that cell: no index array, no np.add.at (costly per
                # call), and the values written answer the alarm check. (Two strokes in one
                # np.add.at over their joined cells measured a third slower.)
                qx, rx = divmod(px, cell)
                qy, ry = divmod(py, cell)
                low, cells, needles = rows[lut_x[rx] + lut_y[ry]]
                base = qy * w + qx + low
                view = flat[base:]
                values = view[cells]
                values += needles
                view[cells] = values
                # A Python max: numpy's reduction costs more than the few values it sees.
                most = max(values.tolist())
                top = most if most > top else top
                touched.append((base, cells))
                continue
            xs.append(px)
            ys.append(py)
            if heading is not None:
                q0 = round(heading[i] * STEPS_PER_RAD)
                d = round(heading[i + 1] * STEPS_PER_RAD) - q0
                d = ((d + _HALF_TURN) & _STEP_MASK) - _HALF_TURN
                steps.append((q0 + round(f * d)) & _STEP_MASK)
        if classes is not None:
            self._touched = touched
            self._touched_max = top
        else:
            cells = self._few_offsets(xs, ys, steps if heading is not None else None)
            np.add.at(self._flat, cells, 1)
            self._touched = [(0, cells)]
            self._touched_max = max(self._flat.take(cells).tolist())
        self._total += len(strokes) * self._n

    def _few_offsets(
        self, xs: list[int], ys: list[int], steps: list[int] | None
    ) -> NDArray[np.intp]:
        """Flat cells of a few strokes, the general way (step 4's offsets, multiply, shift)."""
        mult = self._mult
        tip_m = np.array((xs, ys), dtype=np.int64)[:, None, :]  # (2, 1, k)
        tip_m *= mult
        if steps is not None:
            # Always from the table: a pass meets the same headings again and again.
            built = self._built
            missing = sorted({q // _PAGE_STEPS for q in steps if not built[q // _PAGE_STEPS]})
            p = np.take(self._table_with(missing), steps, axis=1).reshape(2, self._n, -1)
            p += tip_m
        else:
            p = self._base + tip_m
        p >>= self._shift
        clamp = self._clamp
        if clamp is not None:
            np.clip(p, clamp[0], clamp[1], out=p)
        flat = p[1] * self._w
        flat += p[0]
        if clamp is not None:
            flat -= clamp[2]
        touched: NDArray[np.intp] = flat.T.reshape(-1)
        return touched


_COS = np.zeros(HEADING_STEPS)
_SIN = np.zeros(HEADING_STEPS)
_COS_SIN_DONE = np.zeros(HEADING_STEPS, dtype=bool)


def _cos_sin(steps: NDArray[np.intp]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """``math.cos``/``math.sin`` of heading steps (step 4), computed once per process."""
    todo = steps[~_COS_SIN_DONE[steps]]
    if todo.size:
        angles = (todo * RAD_PER_STEP).tolist()
        _COS[todo] = [math.cos(a) for a in angles]
        _SIN[todo] = [math.sin(a) for a in angles]
        _COS_SIN_DONE[todo] = True
    return _COS[steps], _SIN[steps]


_NO_CELLS: tuple[NDArray[np.intp], NDArray[np.intp]] = (
    np.empty(0, dtype=np.intp),
    np.empty(0, dtype=np.intp),
)


def density_counts(
    grid: Grid,
    needles_mm: ArrayLike,
    stroke_times: ArrayLike,
    track: ArrayLike,
    *,
    binning: Binning = "auto",
) -> tuple[NDArray[np.int64], int]:
    """Batch: ``(counts (ny, nx) int64, outside)`` for all strokes in one pass."""
    kernel = DensityKernel(grid, needles_mm, binning=binning)
    kernel.add(stroke_times, track)
    return kernel.counts.copy(), kernel.outside
