"""From telemetry runs to a density map and its statistics: the one pipeline behind
``pen density FILE``, and behind any other face (the workstation) that maps a recorded pass.

Arrays in, one record out; the caller reads the capture or the logbook and writes the picture.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .grid import Grid
from .kernel import DensityKernel, stroke_times_from_counts
from .stats import DensityStats, density_stats
from .telemetry import TelemetryArrays
from .zone import Zone


@dataclass(frozen=True, slots=True)
class DensityMap:
    """Punctures per cell over a zone, with what went into them and the statistics."""

    zone: Zone
    grid: Grid
    counts: NDArray[np.int64]
    stats: DensityStats
    samples: int
    """Telemetry samples read."""
    strokes: int
    runs: int
    """Runs of the pen's clock the samples fell into (mapped each on its own, counts added)."""
    needles: int

    @property
    def density_per_cm2(self) -> NDArray[np.float64]:
        return self.grid.density_per_cm2(self.counts)


def zone_around(
    runs: Sequence[TelemetryArrays], needles: NDArray[np.float64], cell_mm: float
) -> Zone:
    """The track's bounding box, widened by the cartridge's reach and one cell: the zone when
    the operator named none."""
    reach = float(np.abs(needles).max()) + cell_mm
    xs = np.concatenate([run.x_mm for run in runs])
    ys = np.concatenate([run.y_mm for run in runs])
    x0, y0 = float(xs.min()) - reach, float(ys.min()) - reach
    return Zone(
        float(xs.max()) + reach - x0,
        float(ys.max()) + reach - y0,
        (round(x0, 3), round(y0, 3)),
    )


def map_runs(
    runs: Sequence[TelemetryArrays],
    needles: NDArray[np.float64],
    *,
    zone: Zone | None = None,
    cell_mm: float = 0.5,
    target_per_cm2: float | None = 250.0,
    max_per_cm2: float | None = None,
) -> DensityMap:
    """Map every run on one grid (ValueError for a grid that cannot be made: see :class:`Grid`)."""
    if not runs:
        raise ValueError("no telemetry to map")
    if zone is None:
        zone = zone_around(runs, needles, cell_mm)
    grid = zone.grid(cell_mm)
    kernel = DensityKernel(grid, needles)
    samples = strokes = 0
    for run in runs:  # each run of the pen's clock on its own; the counts add up
        times = stroke_times_from_counts(run.times_s, run.stroke_counts)
        kernel.add(times, np.column_stack((run.times_s, run.x_mm, run.y_mm)))
        samples += len(run.times_s)
        strokes += times.size
    counts = kernel.counts
    stats = density_stats(
        counts,
        grid.cell_area_cm2,
        outside_grid=kernel.outside,
        target_per_cm2=target_per_cm2,
        max_per_cm2=max_per_cm2,
    )
    return DensityMap(zone, grid, counts, stats, samples, strokes, len(runs), len(needles))
