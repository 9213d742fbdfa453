"""The slow, obviously-right puncture counter the kernel is checked against.

Plain Python loops over strokes and needles, following the arithmetic contract written down in
:mod:`pendriver.density.kernel` step by step with Python floats and ints (IEEE doubles, each
operation correctly rounded, just as numpy's elementwise ufuncs). No numpy in the arithmetic,
so agreement is evidence, not a shared bug.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence

from .grid import Grid
from .kernel import HEADING_STEPS

__all__ = ["reference_counts"]


def reference_counts(
    grid: Grid,
    needles_mm: Sequence[Sequence[float]],
    stroke_times: Sequence[float],
    track: Sequence[Sequence[float]],
) -> tuple[list[list[int]], int]:
    """``(counts[iy][ix], outside)``, one puncture at a time."""
    rows = [[float(v) for v in r] for r in track]
    if len(rows) == 1:
        rows = [rows[0], [rows[0][0] + 1.0, *rows[0][1:]]]
    ts = [r[0] for r in rows]
    xs = [float(round(r[1] * 1000.0)) for r in rows]
    ys = [float(round(r[2] * 1000.0)) for r in rows]
    # Headings in whole steps of 1/HEADING_STEPS turn.
    hs = [round(r[3] * (HEADING_STEPS / math.tau)) for r in rows] if len(rows[0]) == 4 else None
    needles = [(float(round(n[0] * 1000.0)), float(round(n[1] * 1000.0))) for n in needles_mm]
    ox, oy = grid.origin_um
    cell = grid.cell_um
    ny, nx = grid.shape
    counts = [[0] * nx for _ in range(ny)]
    outside = 0
    m = len(ts)
    for t in stroke_times:
        t = float(t)
        i = min(max(bisect_right(ts, t) - 1, 0), m - 2)
        f = (t - ts[i]) / (ts[i + 1] - ts[i])
        f = min(max(f, 0.0), 1.0)
        x = int(xs[i] + round(f * (xs[i + 1] - xs[i])))
        y = int(ys[i] + round(f * (ys[i + 1] - ys[i])))
        if hs is not None:
            half = HEADING_STEPS // 2
            turned = (hs[i + 1] - hs[i] + half) % HEADING_STEPS - half  # the shorter way
            q = (hs[i] + round(f * turned)) % HEADING_STEPS
            c = math.cos(q * (math.tau / HEADING_STEPS))
            s = math.sin(q * (math.tau / HEADING_STEPS))
        for nxu, nyu in needles:
            if hs is None:
                dx, dy = int(nxu), int(nyu)
            else:
                dx = round(c * nxu - s * nyu)
                dy = round(s * nxu + c * nyu)
            ix = (x + dx - ox) // cell
            iy = (y + dy - oy) // cell
            if 0 <= ix < nx and 0 <= iy < ny:
                counts[iy][ix] += 1
            else:
                outside += 1
    return counts, outside
