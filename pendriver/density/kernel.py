"""The puncture-density kernel: stamp every needle of every stroke and count per cell.

Inputs are plain arrays: stroke times (s), a track of position samples ``(m, 3)`` or
``(m, 4)``: time s, x mm, y mm and optionally the pen's heading in radians, and a needle
layout ``(n, 2)`` in mm (see :mod:`pendriver.density.geometry`).

Arithmetic contract
-------------------
The kernel must give *exactly* the counts of the pure-Python reference
(:mod:`pendriver.density.reference`), cell for cell. A puncture on a cell boundary goes one way
or the other depending on the last bit of a float, so the contract is stated operation by
operation; both implementations perform these IEEE-754 double operations (each one correctly
rounded, no fused multiply-add, no BLAS), then everything after the rounding steps is integer
arithmetic, which is exact:

1. Track and needle positions are quantised to whole µm, the wire's resolution:
   ``X = rint(x_mm * 1000.0)`` (round half to even, as ``np.rint`` and ``round`` do).
2. For a stroke at time ``t``: ``i`` is the last sample with ``T[i] <= t`` (``bisect_right`` -
   1), clamped to ``[0, m-2]``; ``f = (t - T[i]) / (T[i+1] - T[i])`` clamped to ``[0, 1]``
   (no extrapolation: before the first sample or after the last the tip rests there).
3. Tip: ``x = X[i] + rint(f * (X[i+1] - X[i]))``, same for y: whole µm again.
4. Heading (when given): ``h = H[i] + f * (H[i+1] - H[i])``; ``c = math.cos(h)``,
   ``s = math.sin(h)``: the C library's functions in both implementations (numpy's own SIMD
   ``cos`` may differ by an ulp). Needle offset: ``dx = rint(c*nx - s*ny)``,
   ``dy = rint(s*nx + c*ny)``, products first, then the sum/difference. Without a heading the
   offset is ``(nx, ny)``, which is what ``c = 1, s = 0`` gives too.
5. Puncture at ``(x + dx, y + dy)`` µm; cell ``ix = (x + dx - ox) // cell`` (floor), same for
   y. Cells outside ``[0, nx) × [0, ny)`` count as *outside*.

Because step 5 is integer arithmetic, translating the track and the grid origin by the same
whole number of µm (or the track alone by whole cells) translates the map exactly.

Speed
-----
Punctures are laid out needle-major, ``(2, needles, strokes)``, in blocks that stay in cache;
x and y go through each numpy call together. The grid is padded by one cell on each side and
every cell index is clipped into the padded grid, so there is no per-puncture bounds test:
whatever lands in the border ring is "outside". Flat indices of many blocks are collected and
counted with one ``np.bincount`` (no ``minlength``: only the prefix of the grid that was hit is
allocated and added).

A call with only a few strokes (a live chunk: at most ``_SMALL_STROKES`` strokes and
``_SMALL_PUNCTURES`` punctures) takes a pure-Python path instead: the same contract step by step
with Python floats and ints (``round`` is round-half-even like ``np.rint``), counting straight
into the padded grid through a memoryview, which avoids some thirty small numpy calls.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from itertools import pairwise

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .grid import UM_PER_MM, Grid

__all__ = [
    "DensityKernel",
    "density_counts",
    "stroke_times_from_counts",
    "stroke_times_uniform",
]

_MAX_ABS_MM = 1e9  # 1000 km: keeps every µm value far inside int64 and float64's exact range
_BLOCK_PUNCTURES = 1 << 14  # (2, needles, strokes) int64 block: 256 KiB, stays in L2
_BIN_PUNCTURES = 1 << 20  # flat indices collected before one bincount
_SMALL_PUNCTURES = 160  # at most this many punctures per call: pure-Python path (live chunks)
_SMALL_STROKES = 4


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
    if len(nd) == 0 or not np.all(np.abs(nd) < _MAX_ABS_MM):
        raise ValueError("need at least one needle, all positions finite and sane")
    return np.rint(nd * float(UM_PER_MM))


class _Track:
    """A track prepared for interpolation: times, µm positions as ``(2, m)``, headings."""

    __slots__ = ("h", "m", "t", "xy")

    def __init__(self, track: ArrayLike) -> None:
        arr = np.asarray(track, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] not in (3, 4) or len(arr) < 1:
            raise ValueError("track must be (m, 3) or (m, 4): time s, x mm, y mm[, heading rad]")
        # One reduction each: NaN fails every comparison, so it is caught here too.
        if not np.abs(arr[:, 1:3]).max() < _MAX_ABS_MM or not np.isfinite(arr[:, ::3]).all():
            raise ValueError("track values must be finite and positions sane")
        if len(arr) == 1:  # one sample: the tip rests there
            arr = np.concatenate((arr, arr))
            arr[1, 0] += 1.0
        t = np.ascontiguousarray(arr[:, 0])
        if not np.all(t[1:] > t[:-1]):
            raise ValueError("track times must be strictly increasing")
        self.t = t
        self.xy = np.rint(arr[:, 1:3].T * float(UM_PER_MM))
        self.h = np.ascontiguousarray(arr[:, 3]) if arr.shape[1] == 4 else None
        self.m = len(t)

    def tips(
        self, strokes: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64] | None, NDArray[np.float64] | None]:
        """Tip positions ``(2, k)`` in whole µm (as float) and cos/sin of the heading."""
        t = self.t
        i = np.searchsorted(t, strokes, side="right")
        i -= 1
        np.clip(i, 0, self.m - 2, out=i)
        i1 = i + 1
        t0 = t[i]
        f = (strokes - t0) / (t[i1] - t0)
        np.clip(f, 0.0, 1.0, out=f)
        p0 = self.xy[:, i]
        tip = p0 + np.rint(f * (self.xy[:, i1] - p0))
        if self.h is None:
            return tip, None, None
        h0 = self.h[i]
        hl = (h0 + f * (self.h[i1] - h0)).tolist()
        k = len(hl)
        c = np.fromiter(map(math.cos, hl), dtype=np.float64, count=k)
        s = np.fromiter(map(math.sin, hl), dtype=np.float64, count=k)
        return tip, c, s


class DensityKernel:
    """A persistent count grid that strokes are stamped into, batch or chunk by chunk.

    ``add`` may be called with the strokes in any chunking; the counts are the same as one call
    with all of them (integer counting is associative). ``counts`` is a view into the padded
    grid: it changes as strokes are added.
    """

    def __init__(self, grid: Grid, needles_mm: ArrayLike) -> None:
        self.grid = grid
        self._needles = _needles_um(needles_mm)  # (n, 2) whole µm as float
        self._n = len(self._needles)
        ny, nx = grid.shape
        self._w = nx + 2
        self._padded = np.zeros((ny + 2, nx + 2), dtype=np.int64)
        self._flat = self._padded.reshape(-1)
        self._upper = np.array([nx + 1, ny + 1], dtype=np.int64).reshape(2, 1, 1)
        # Per-stroke shift: minus the origin, plus one cell so that the floor division lands
        # in padded coordinates (ix + 1) directly.
        ox, oy = grid.origin_um
        self._shift = np.array([grid.cell_um - ox, grid.cell_um - oy], dtype=np.int64)[:, None]
        self._offsets = np.ascontiguousarray(self._needles.T.astype(np.int64)[:, :, None])
        self._nx_f = np.ascontiguousarray(self._needles[:, 0:1])  # (n, 1)
        self._ny_f = np.ascontiguousarray(self._needles[:, 1:2])
        self._total = 0
        # Pure-Python path (tiny live chunks): the same contract, step by step, with Python
        # floats and ints; counts go straight into the padded grid through a memoryview.
        self._mv = memoryview(self._flat.data)
        self._needle_list = [(float(a), float(b)) for a, b in self._needles.tolist()]
        self._needle_ints = [(int(a), int(b)) for a, b in self._needle_list]

    @property
    def needles(self) -> int:
        return self._n

    @property
    def counts(self) -> NDArray[np.int64]:
        """Punctures per cell, ``(ny, nx)`` int64 (a live view)."""
        return self._padded[1:-1, 1:-1]

    @property
    def total(self) -> int:
        """Every puncture added so far, inside the grid or not."""
        return self._total

    @property
    def outside(self) -> int:
        """Punctures that fell outside the grid (the padded grid's border ring)."""
        p = self._padded
        return int(p[0].sum() + p[-1].sum() + p[1:-1, 0].sum() + p[1:-1, -1].sum())

    def reset(self) -> None:
        self._padded[...] = 0
        self._total = 0

    def add(self, stroke_times: ArrayLike, track: ArrayLike) -> None:
        """Stamp all needles of the strokes at ``stroke_times`` along ``track``."""
        strokes = np.asarray(stroke_times, dtype=np.float64).reshape(-1)
        k = len(strokes)
        if k == 0:
            return
        if k <= _SMALL_STROKES and k * self._n <= _SMALL_PUNCTURES:
            self._add_small(strokes.tolist(), track)
            return
        if not np.all(np.isfinite(strokes)):
            raise ValueError("stroke times must be finite")
        tip, c, s = _Track(track).tips(strokes)
        rel = tip.astype(np.int64)
        rel += self._shift
        n = self._n
        block = max(1, _BLOCK_PUNCTURES // n)
        cell = self.grid.cell_um
        upper = self._upper
        w = self._w
        if k * n <= _BLOCK_PUNCTURES:
            # One block, counted straight away (the live path: a few strokes per chunk).
            self._count(self._stamp(rel, c, s, 0, k, cell, upper, w))
        else:
            binbuf = np.empty(max(block * n, min(_BIN_PUNCTURES, k * n)), dtype=np.intp)
            fill = 0
            for b0 in range(0, k, block):
                b1 = min(k, b0 + block)
                flat = self._stamp(rel, c, s, b0, b1, cell, upper, w)
                size = flat.size
                if fill + size > binbuf.size:
                    self._count(binbuf[:fill])
                    fill = 0
                binbuf[fill : fill + size] = flat.reshape(-1)
                fill += size
            if fill:
                self._count(binbuf[:fill])
        self._total += k * n

    def _add_small(self, strokes: list[float], track: ArrayLike) -> None:
        """A few strokes, pure Python: the contract's steps with Python floats and ints."""
        arr = np.asarray(track, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] not in (3, 4) or len(arr) < 1:
            raise ValueError("track must be (m, 3) or (m, 4): time s, x mm, y mm[, heading rad]")
        rows: list[list[float]] = arr.tolist()
        isfinite = math.isfinite
        for r in rows:
            # NaN fails the comparison, so it is caught here too (as in _Track).
            if not (abs(r[1]) < _MAX_ABS_MM and abs(r[2]) < _MAX_ABS_MM):
                raise ValueError("track values must be finite and positions sane")
            if not (isfinite(r[0]) and (len(r) == 3 or isfinite(r[3]))):
                raise ValueError("track values must be finite and positions sane")
        if len(rows) == 1:  # one sample: the tip rests there
            r0 = rows[0]
            rows = [r0, [r0[0] + 1.0, *r0[1:]]]
        ts = [r[0] for r in rows]
        for a, b in pairwise(ts):
            if not b > a:
                raise ValueError("track times must be strictly increasing")
        for t in strokes:
            if not isfinite(t):
                raise ValueError("stroke times must be finite")
        heading = len(rows[0]) == 4
        m2 = len(ts) - 2
        ox, oy = self.grid.origin_um
        cell = self.grid.cell_um
        ny, nx = self.grid.shape
        ux, uy = nx + 1, ny + 1
        w = self._w
        mv = self._mv
        for t in strokes:
            i = bisect_right(ts, t) - 1
            i = 0 if i < 0 else (m2 if i > m2 else i)
            r0, r1 = rows[i], rows[i + 1]
            f = (t - r0[0]) / (r1[0] - r0[0])
            f = 0.0 if f < 0.0 else (1.0 if f > 1.0 else f)
            x0 = float(round(r0[1] * 1000.0))
            y0 = float(round(r0[2] * 1000.0))
            # Shifted by one cell: the floor division lands in padded coordinates.
            x = int(x0 + round(f * (float(round(r1[1] * 1000.0)) - x0))) - ox + cell
            y = int(y0 + round(f * (float(round(r1[2] * 1000.0)) - y0))) - oy + cell
            if heading:
                h = r0[3] + f * (r1[3] - r0[3])
                c, s = math.cos(h), math.sin(h)
                for a, b in self._needle_list:
                    ix = (x + round(c * a - s * b)) // cell
                    iy = (y + round(s * a + c * b)) // cell
                    ix = 0 if ix < 0 else (ux if ix > ux else ix)
                    iy = 0 if iy < 0 else (uy if iy > uy else iy)
                    mv[iy * w + ix] += 1
            else:
                for dx, dy in self._needle_ints:
                    ix = (x + dx) // cell
                    iy = (y + dy) // cell
                    ix = 0 if ix < 0 else (ux if ix > ux else ix)
                    iy = 0 if iy < 0 else (uy if iy > uy else iy)
                    mv[iy * w + ix] += 1
        self._total += len(strokes) * self._n

    def _stamp(
        self,
        rel: NDArray[np.int64],
        c: NDArray[np.float64] | None,
        s: NDArray[np.float64] | None,
        b0: int,
        b1: int,
        cell: int,
        upper: NDArray[np.int64],
        w: int,
    ) -> NDArray[np.intp]:
        """Flat padded-cell indices of the strokes ``b0:b1``, needle-major."""
        if c is None or s is None:
            p = self._offsets + rel[:, None, b0:b1]
        else:
            cb, sb = c[b0:b1], s[b0:b1]
            nx, ny = self._nx_f, self._ny_f
            p = np.empty((2, self._n, b1 - b0), dtype=np.int64)
            dx = np.rint(nx * cb - ny * sb)
            dy = np.rint(nx * sb + ny * cb)
            np.add(dx, rel[0, None, b0:b1], out=p[0], casting="unsafe")
            np.add(dy, rel[1, None, b0:b1], out=p[1], casting="unsafe")
        p //= cell
        np.maximum(p, 0, out=p)
        np.minimum(p, upper, out=p)
        flat: NDArray[np.intp] = p[1]
        flat *= w
        flat += p[0]
        return flat

    def _count(self, flat: NDArray[np.intp]) -> None:
        hits = np.bincount(flat.reshape(-1))
        self._flat[: len(hits)] += hits


def density_counts(
    grid: Grid, needles_mm: ArrayLike, stroke_times: ArrayLike, track: ArrayLike
) -> tuple[NDArray[np.int64], int]:
    """Batch: ``(counts (ny, nx) int64, outside)`` for all strokes in one pass."""
    kernel = DensityKernel(grid, needles_mm)
    kernel.add(stroke_times, track)
    return kernel.counts.copy(), kernel.outside
