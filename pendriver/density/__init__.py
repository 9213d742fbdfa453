"""Puncture density: where the needles went, counted per cell.

Arrays in, arrays out: no I/O and no protocol objects. The core is
:class:`~pendriver.density.kernel.DensityKernel` (and its batch form
:func:`~pendriver.density.kernel.density_counts`); :mod:`~pendriver.density.geometry` says where
the needles are and :mod:`~pendriver.density.reference` is the slow counter it is tested against.
"""

from __future__ import annotations

from .geometry import (
    Roller,
    circle,
    custom,
    from_cartridge,
    roller_strokes,
    spiral,
    square_grid,
)
from .grid import Grid
from .kernel import (
    DensityKernel,
    density_counts,
    stroke_times_from_counts,
    stroke_times_uniform,
    unwrap_counter,
)
from .reference import reference_counts

__all__ = [
    "DensityKernel",
    "Grid",
    "Roller",
    "circle",
    "custom",
    "density_counts",
    "from_cartridge",
    "reference_counts",
    "roller_strokes",
    "spiral",
    "square_grid",
    "stroke_times_from_counts",
    "stroke_times_uniform",
    "unwrap_counter",
]
