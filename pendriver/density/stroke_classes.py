"""Stroke classes: without a heading, a puncture's cell needs no arithmetic of its own.

With the tip at ``Q·cell + r`` (``0 <= r < cell``) and a needle offset ``a·cell + b``, the
needle's cell is ``Q + a + [r >= cell - b]``. So a stroke's remainders ``(rx, ry)`` fall in one
of at most ``(n+1)²`` classes (how many of the needles' thresholds ``cell - b`` they reach, per
axis: ``ux`` and ``uy``), and each class has a fixed pattern of cell offsets for the needles.
This is exactly the floor division of step 5 of the kernel's arithmetic contract, done once per
class instead of once per puncture. A stroke is then two numbers: its *base* (the flat index
of its tip's cell in the padded grid) and its class.

Two ways to count a batch of such strokes, both exact integer counting:

* **Per puncture** (:meth:`StrokeClasses.stamp_punctures`): each needle's flat cell is the
  stroke's base plus one entry gathered from the class pattern; the cells are counted with
  ``np.bincount``. Cost grows with strokes × needles.
* **By histogram** (:meth:`StrokeClasses.stamp_histogram`): count the strokes per (class, base)
  with one ``np.bincount``, turn the counts into prefix sums over the two class axes, and add a
  few shifted copies of those per needle. Needle ``j`` moves one cell right exactly for the
  strokes whose ``ux`` is above its rank ``rx``, and one cell up for ``uy`` above ``ry``; the
  strokes of each of the four cases are a rectangle of classes, whose counts per base are four
  prefix sums combined (inclusion-exclusion). So needle ``j`` adds at most nine shifted arrays
  into the grid: ``P[rx, ry]`` at its offset ``A``, ``P[Kx, ry] - P[rx, ry]`` at ``A + 1``,
  ``P[rx, Ky] - P[rx, ry]`` at ``A + w``, and ``P[Kx, Ky] - P[Kx, ry] - P[rx, Ky] + P[rx,
  ry]`` at ``A + 1 + w`` (``Kx``, ``Ky``: the last class, i.e. all strokes). Cost grows with
  the span of grid cells the strokes cover times (classes + terms), not with the punctures, so
  it wins when many strokes cover a grid few times their number (a session or a long capture):
  a puncture costs a gather, an add and a scattered increment, a histogram element a
  contiguous add.

:meth:`StrokeClasses.histogram_cheaper` chooses by a cost model measured on the development
machine (``tools/bench_density.py`` prints both ways' times beside the engine's).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["StrokeClasses"]

# Relative costs, in contiguous integer adds over an array, measured on the development machine:
# one puncture (gather + add + bincount increment), one histogram element zeroed and counted
# into, one stroke's key. With them the choice flips near 2.5e6 punctures on the benchmark's
# grid, where the two ways measured equal.
_PUNCTURE_COST = 5.0
_HISTOGRAM_ZERO_COST = 0.5
_STROKE_KEY_COST = 6.0
_MAX_HISTOGRAM_BYTES = 64 << 20  # beyond this the per-puncture path is used whatever the cost


class StrokeClasses:
    """The class tables of one needle layout on one grid (cell size, padded row width)."""

    __slots__ = (
        "_live_rows",
        "classes",
        "kx",
        "ky",
        "lut_x",
        "lut_x_list",
        "lut_y",
        "lut_y_list",
        "pattern",
        "terms",
    )

    def __init__(self, needles_um: NDArray[np.int64], cell: int, w: int) -> None:
        a, b = np.divmod(needles_um, cell)  # (n, 2): whole cells and the rest, 0 <= b < cell
        thresholds = cell - b
        luts, steps, ranks = [], [], []
        for axis in (0, 1):
            theta = np.unique(thresholds[:, axis])
            theta = theta[theta < cell]  # a threshold of a whole cell is never reached
            luts.append(np.searchsorted(theta, np.arange(cell), side="right").astype(np.intp))
            rank = np.searchsorted(theta, thresholds[:, axis], side="left")
            ranks.append(rank)
            # step[u, j]: needle j's cell offset for a remainder in class u
            u = np.arange(len(theta) + 1)[:, None]
            steps.append(a[:, axis][None, :] + (rank[None, :] < u))
        self.kx, self.ky = kx, ky = len(steps[0]), len(steps[1])
        self.classes = kx * ky
        self.lut_x = luts[0]
        self.lut_y = luts[1] * kx
        pattern = (steps[1][:, None, :] * w + steps[0][None, :, :]).reshape(-1, len(a))
        self.pattern = np.ascontiguousarray(pattern.T.astype(np.intp))  # (n, classes)
        self._live_rows: list[tuple[int, NDArray[np.intp], NDArray[np.int64]]] | None = None
        self.lut_x_list: list[int] = self.lut_x.tolist()
        self.lut_y_list: list[int] = self.lut_y.tolist()
        self.terms = _histogram_terms(
            (a[:, 1] * w + a[:, 0]).tolist(), ranks[0].tolist(), ranks[1].tolist(), kx, ky, w
        )

    # -- per puncture ----------------------------------------------------------------------

    def stamp_punctures(
        self, base: NDArray[np.intp], cls: NDArray[np.intp], out: NDArray[np.intp]
    ) -> None:
        """Each needle's flat cells for the strokes ``(base, cls)``, into the rows of
        ``out`` ``(needles, strokes)``."""
        for row, seg in zip(self.pattern, out, strict=True):
            # 1-D gather with mode="wrap": the classes are valid indices by construction, and
            # numpy's default mode with ``out`` goes through a buffered path.
            np.take(row, cls, out=seg, mode="wrap")
            seg += base

    # -- by histogram ----------------------------------------------------------------------

    def histogram_cheaper(self, strokes: int, span: int) -> bool:
        """Whether :meth:`stamp_histogram` costs less than the per-puncture path for
        ``strokes`` strokes whose bases lie within ``span`` consecutive flat cells."""
        cells = span * self.classes
        if cells * 8 > _MAX_HISTOGRAM_BYTES:
            return False
        prefix = span * ((self.kx - 1) * self.ky + (self.ky - 1) * self.kx)
        histogram = (
            cells * _HISTOGRAM_ZERO_COST + prefix + span * len(self.terms)
        ) + strokes * _STROKE_KEY_COST
        return histogram < strokes * len(self.pattern) * _PUNCTURE_COST

    def stamp_histogram(
        self,
        flat: NDArray[np.int64],
        base: NDArray[np.intp],
        cls: NDArray[np.intp],
        lo: int,
        span: int,
    ) -> None:
        """Add the punctures of the strokes ``(base, cls)`` to the flat padded grid ``flat``
        through the strokes' histogram per (class, base); see the module docstring. Every
        base lies in ``[lo, lo + span)`` (the caller has them from choosing this way)."""
        keys = cls * span
        keys += base
        keys -= lo
        hist = np.bincount(keys, minlength=self.classes * span).reshape(self.ky, self.kx, span)
        # Prefix sums over both class axes, in place: hist[uy, ux] = strokes with classes
        # at most (ux, uy), per base.
        for ux in range(1, self.kx):
            hist[:, ux] += hist[:, ux - 1]
        for uy in range(1, self.ky):
            hist[uy] += hist[uy - 1]
        size = len(flat)
        for ux, uy, shift, coef in self.terms:
            # Where the shifted span leaves the grid the prefix sums are zero there: every
            # stroke's punctures lie inside the padded grid by construction.
            d0 = lo + shift
            s0 = -d0 if d0 < 0 else 0
            s1 = span - max(0, d0 + span - size)
            if s1 <= s0:
                # The whole shifted span lies off the grid (a tiny grid, needles far from the
                # tip): nothing to add, and slicing with a negative end would wrap around.
                continue
            dst = flat[d0 + s0 : d0 + s1]
            src = hist[uy, ux, s0:s1]
            if coef == 1:
                dst += src
            elif coef == -1:
                dst -= src
            else:
                dst += coef * src

    # -- live chunks -----------------------------------------------------------------------

    @property
    def live_rows(self) -> list[tuple[int, NDArray[np.intp], NDArray[np.int64]]]:
        """Per class, for live chunks: its lowest cell offset, its distinct cells as offsets
        from that one (the stroke's lowest cell, which a clamped tip keeps inside the grid),
        and how many needles land in each. A list, as a list lookup costs a tenth of a numpy
        one; built on first use, all classes at once (a batch never needs it, and a class met
        for the first time during a pass must not cost that chunk tens of microseconds)."""
        if self._live_rows is None:
            # All classes at once, vectorised (numpy calls per class would cost ~30 µs each
            # here): sort each row, mark where a new cell starts, split the flat results.
            rows = np.sort(self.pattern.T, axis=1)  # (classes, n), a fresh array
            low = rows[:, :1].copy()
            rows -= low
            first = np.ones(rows.shape, dtype=bool)
            np.not_equal(rows[:, 1:], rows[:, :-1], out=first[:, 1:])
            at = np.flatnonzero(first)
            cells = rows.ravel()[at].astype(np.intp)
            needles = np.diff(at, append=rows.size).astype(np.int64)
            ends = np.cumsum(first.sum(axis=1))[:-1]
            self._live_rows = list(
                zip(
                    low.ravel().tolist(),
                    np.split(cells, ends),
                    np.split(needles, ends),
                    strict=True,
                )
            )
        return self._live_rows


def _histogram_terms(
    offsets: list[int], rx: list[int], ry: list[int], kx: int, ky: int, w: int
) -> list[tuple[int, int, int, int]]:
    """The shifted prefix-sum arrays whose sum is the grid's counts: ``(ux, uy, flat shift,
    coefficient)``, terms with the same array and shift merged, zero ones dropped.

    Needle with flat offset ``A`` and ranks ``(rx, ry)``: strokes with ``ux <= rx`` and
    ``uy <= ry`` put it at ``A``; ``ux > rx`` (only): ``A + 1``; ``uy > ry`` (only):
    ``A + w``; both: ``A + 1 + w``. Ranks are at most the last class, which is never
    exceeded (a needle whose offset is whole cells)."""
    lx, ly = kx - 1, ky - 1
    merged: dict[tuple[int, int, int], int] = {}

    def add(ux: int, uy: int, shift: int, coef: int) -> None:
        key = (ux, uy, shift)
        merged[key] = merged.get(key, 0) + coef

    for offset, x, y in zip(offsets, rx, ry, strict=True):
        add(x, y, offset, 1)
        if x < lx:
            add(lx, y, offset + 1, 1)
            add(x, y, offset + 1, -1)
        if y < ly:
            add(x, ly, offset + w, 1)
            add(x, y, offset + w, -1)
        if x < lx and y < ly:
            add(lx, ly, offset + 1 + w, 1)
            add(lx, y, offset + 1 + w, -1)
            add(x, ly, offset + 1 + w, -1)
            add(x, y, offset + 1 + w, 1)
    return [(ux, uy, shift, c) for (ux, uy, shift), c in sorted(merged.items()) if c]
