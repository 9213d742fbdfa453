"""Density during a pass: fed telemetry as it arrives, a map ready at any moment.

Telemetry carries the cumulative stroke count and the tip position; each chunk adds the
strokes between the previous sample and its last one (the previous chunk's last sample is
carried over, so no interval is lost or counted twice between chunks). The moment any cell of
the zone goes above the maximum density an :class:`OverTreatment` is returned, once per cell,
so the driver can warn the operator while the pen is still on that spot.
"""

from __future__ import annotations

import operator
from bisect import bisect_right
from dataclasses import dataclass
from itertools import islice
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .grid import Grid
from .kernel import DensityKernel, stroke_times_from_counts, unwrap_counter
from .stats import DensityStats, density_stats

_FEW_SAMPLES = 32  # telemetry samples per chunk handled in plain Python
_FEW_STROKES_FED = 16  # more strokes than this in such a chunk: the numpy path after all


def _as_list(values: ArrayLike) -> list[Any]:
    """A 1-D sequence as a Python list (``tolist`` converts numpy scalars in one C call)."""
    if isinstance(values, np.ndarray) and values.ndim == 1:
        return values.tolist()  # type: ignore[no-any-return]
    return np.asarray(values).reshape(-1).tolist()


@dataclass(frozen=True, slots=True)
class OverTreatment:
    """A cell went above the maximum density."""

    time_s: float
    x_mm: float
    """Centre of the cell."""
    y_mm: float
    density_per_cm2: float


class LiveDensity:
    """A pass's density map, grown chunk by chunk from telemetry."""

    def __init__(
        self,
        grid: Grid,
        needles_mm: ArrayLike,
        *,
        max_per_cm2: float | None = None,
        zone: NDArray[np.bool_] | None = None,
    ) -> None:
        self.grid = grid
        self.kernel = DensityKernel(grid, needles_mm)
        self.kernel.prepare_live()
        self.max_per_cm2 = max_per_cm2
        self.zone = zone
        self._last: tuple[float, int, float, float] | None = None
        self._flagged = np.zeros(grid.shape, dtype=bool)
        self.alarms: list[OverTreatment] = []
        """Every over-treatment raised so far, in order."""
        # The count a cell may hold before it is over the maximum, in whole punctures.
        self._limit = (
            int(np.floor(max_per_cm2 * grid.cell_area_cm2)) if max_per_cm2 is not None else None
        )

    def feed(
        self, times_s: ArrayLike, stroke_counts: ArrayLike, x_mm: ArrayLike, y_mm: ArrayLike
    ) -> list[OverTreatment]:
        """Add a chunk of telemetry (parallel arrays, in time order); return new alarms."""
        if isinstance(times_s, np.ndarray):
            short = times_s.size <= _FEW_SAMPLES
        else:
            short = isinstance(times_s, list | tuple) or np.size(times_s) <= _FEW_SAMPLES
        if short:
            few = self._feed_few(times_s, stroke_counts, x_mm, y_mm)
            if few is not None:
                return few
        t = np.asarray(times_s, dtype=np.float64).reshape(-1)
        c = np.asarray(stroke_counts, dtype=np.int64).reshape(-1)
        x = np.asarray(x_mm, dtype=np.float64).reshape(-1)
        y = np.asarray(y_mm, dtype=np.float64).reshape(-1)
        if not t.size:
            return []
        if self._last is not None:
            lt, lc, lx, ly = self._last
            t, c = np.concatenate(([lt], t)), np.concatenate(([lc], c))
            x, y = np.concatenate(([lx], x)), np.concatenate(([ly], y))
        # The raw count is carried and the whole chunk unwrapped with it, so a wrap or a pen
        # reboot between chunks is handled like one inside a chunk.
        self._last = (float(t[-1]), int(c[-1]), float(x[-1]), float(y[-1]))
        c = unwrap_counter(c)
        if t.size < 2:
            return []
        strokes = stroke_times_from_counts(t, c)
        if not strokes.size:
            return []  # nothing was added, so nothing can have crossed the maximum
        self.kernel.add(strokes, np.column_stack((t, x, y)))
        return self._check(float(t[-1]))

    def _feed_few(
        self, times_s: ArrayLike, stroke_counts: ArrayLike, x_mm: ArrayLike, y_mm: ArrayLike
    ) -> list[OverTreatment] | None:
        """A short chunk (the live case) in plain Python: the same unwrapping and stroke times
        as :func:`unwrap_counter` and :func:`stroke_times_from_counts`, operation for
        operation, then the kernel's few-strokes path. None: too many strokes, use numpy."""
        t, c, x, y = _as_list(times_s), _as_list(stroke_counts), _as_list(x_mm), _as_list(y_mm)
        if not len(t) == len(c) == len(x) == len(y):
            raise ValueError("times, counts and positions must have the same length")
        if not t:
            return []
        last = self._last
        if last is not None:  # the interval from the previous chunk's last sample
            t, c, x, y = [last[0], *t], [last[1], *c], [last[2], *x], [last[3], *y]
        # (k, n): n strokes between samples k and k+1.
        intervals: list[tuple[int, int]] = []
        if all(map(operator.le, c, islice(c, 1, None))):
            # The usual case, a counter that only rose: the intervals with strokes are found
            # by bisection (at 1 kHz telemetry most intervals have none).
            total = c[-1] - c[0]
            k = bisect_right(c, c[0])
            while k < len(c):
                intervals.append((k - 1, c[k] - c[k - 1]))
                k = bisect_right(c, c[k], k)
        else:
            # A drop is a wrap of the u32 counter when it is more than half the range,
            # otherwise a reboot, which adds nothing.
            added = [
                n + (1 << 32) if n < -(1 << 31) else max(n, 0)
                for n in map(operator.sub, islice(c, 1, None), c)
            ]
            total = sum(added)
            intervals = [(k, n) for k, n in enumerate(added) if n]
        if total > _FEW_STROKES_FED:
            return None  # self._last untouched: the numpy path takes the chunk as it came
        self._last = (t[-1], c[-1], x[-1], y[-1])
        strokes: list[float] = []
        for k, n in intervals:
            t0 = t[k]
            span = t[k + 1] - t0
            strokes += [t0 + (j + 1) / n * span for j in range(n)]
        if not strokes:
            return []  # nothing was added, so nothing can have crossed the maximum
        self.kernel.add_few(strokes, t, x, y)
        return self._check(t[-1])

    def _check(self, now_s: float) -> list[OverTreatment]:
        if self._limit is None:
            return []
        # Only the cells this chunk touched can have crossed the limit: the kernel looks at
        # those alone, so the check costs next to nothing while nothing is over.
        iy, ix = self.kernel.cells_over(self._limit)
        if not iy.size:
            return []
        keep = ~self._flagged[iy, ix]
        if self.zone is not None:
            keep &= self.zone[iy, ix]
        iy, ix = iy[keep], ix[keep]
        if not iy.size:
            return []
        self._flagged[iy, ix] = True
        cell = self.grid.cell_mm
        x0, y0 = self.grid.origin_mm
        alarms = [
            OverTreatment(
                time_s=now_s,
                x_mm=x0 + (ix + 0.5) * cell,
                y_mm=y0 + (iy + 0.5) * cell,
                density_per_cm2=float(self.kernel.counts[iy, ix]) / self.grid.cell_area_cm2,
            )
            for iy, ix in zip(iy.tolist(), ix.tolist(), strict=True)
        ]
        self.alarms += alarms
        return alarms

    @property
    def counts(self) -> NDArray[np.int64]:
        return self.kernel.counts

    @property
    def density_per_cm2(self) -> NDArray[np.float64]:
        return self.grid.density_per_cm2(self.kernel.counts)

    def stats(self, *, target_per_cm2: float | None = None) -> DensityStats:
        return density_stats(
            self.kernel.counts,
            self.grid.cell_area_cm2,
            zone=self.zone,
            outside_grid=self.kernel.outside,
            target_per_cm2=target_per_cm2,
            max_per_cm2=self.max_per_cm2,
        )
