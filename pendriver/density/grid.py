"""The grid a density map is counted on.

Positions on the wire are whole micrometres, so the grid lives on the same lattice: its origin
and cell size are whole µm. That lets the kernel find a puncture's cell with integer floor
division, which is exact, and makes translating a map by whole cells an exact operation (see
:mod:`pendriver.density.kernel` for the arithmetic contract).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["MAX_CELLS", "UM_PER_MM", "Grid", "mm_to_um"]

UM_PER_MM = 1000
_UM_TOLERANCE = 1e-6

MAX_CELLS = 4_000_000
"""The most cells a grid may have: a 200 x 200 mm zone at 0.1 mm cells (32 MB of counts).
Beyond it a typo such as ``--cell 0.001`` would ask for gigabytes and hang the machine."""


def mm_to_um(name: str, value_mm: float) -> int:
    """``value_mm`` as whole µm; a value off the µm lattice is a caller error, not a rounding."""
    scaled = float(value_mm) * UM_PER_MM
    if not np.isfinite(scaled):
        raise ValueError(f"{name} must be finite, got {value_mm!r}")
    q = round(scaled)
    if abs(scaled - q) > _UM_TOLERANCE * max(1.0, abs(scaled)):
        raise ValueError(f"{name} must be a whole number of µm, got {value_mm!r} mm")
    return q


def _round_up(mm: float) -> float:
    """``mm`` rounded up to a whole µm, so the advice it gives is a size that works."""
    return float(np.ceil(mm * UM_PER_MM) / UM_PER_MM)


@dataclass(frozen=True, slots=True)
class Grid:
    """An axis-aligned grid of square cells.

    ``origin_mm`` is the lower-left corner of cell ``[0, 0]``; x grows along columns, y along
    rows, so ``counts[iy, ix]`` covers ``[ox + ix·c, ox + (ix+1)·c) × [oy + iy·c, oy + (iy+1)·c)``.
    ``size_mm`` is rounded *up* to whole cells.
    """

    origin_mm: tuple[float, float]
    size_mm: tuple[float, float]
    cell_mm: float
    origin_um: tuple[int, int] = field(init=False)
    cell_um: int = field(init=False)
    shape: tuple[int, int] = field(init=False)  # (ny, nx)

    def __post_init__(self) -> None:
        ox = mm_to_um("origin x", self.origin_mm[0])
        oy = mm_to_um("origin y", self.origin_mm[1])
        cell = mm_to_um("cell size", self.cell_mm)
        if cell <= 0:
            raise ValueError(f"cell size must be positive, got {self.cell_mm!r} mm")
        w = round(float(self.size_mm[0]) * UM_PER_MM)
        h = round(float(self.size_mm[1]) * UM_PER_MM)
        if w <= 0 or h <= 0:
            raise ValueError(f"grid size must be positive, got {self.size_mm!r} mm")
        shape = (-(-h // cell), -(-w // cell))
        if shape[0] * shape[1] > MAX_CELLS:
            smallest = ((w * h / MAX_CELLS) ** 0.5) / UM_PER_MM
            raise ValueError(
                f"a {w / UM_PER_MM:g} x {h / UM_PER_MM:g} mm zone in {self.cell_mm:g} mm cells "
                f"is {shape[0] * shape[1]:,} cells, more than {MAX_CELLS:,}: use a cell of at "
                f"least {_round_up(smallest):g} mm"
            )
        object.__setattr__(self, "origin_um", (ox, oy))
        object.__setattr__(self, "cell_um", cell)
        object.__setattr__(self, "shape", shape)

    @property
    def nx(self) -> int:
        return self.shape[1]

    @property
    def ny(self) -> int:
        return self.shape[0]

    @property
    def cell_area_cm2(self) -> float:
        """One cell's area in cm² (1 cm = 10 mm = 10 000 µm)."""
        side_cm = self.cell_um / 10_000
        return side_cm * side_cm

    @property
    def extent_mm(self) -> tuple[float, float, float, float]:
        """``(x0, x1, y0, y1)`` of the whole grid, as matplotlib's ``extent`` wants it."""
        ox, oy = self.origin_um
        c = self.cell_um
        return (
            ox / UM_PER_MM,
            (ox + self.nx * c) / UM_PER_MM,
            oy / UM_PER_MM,
            (oy + self.ny * c) / UM_PER_MM,
        )

    def density_per_cm2(self, counts: ArrayLike) -> NDArray[np.float64]:
        """Punctures per cm²: counts divided by the cell area."""
        return np.asarray(counts, dtype=np.float64) / self.cell_area_cm2

    def shifted_cells(self, dx_cells: int, dy_cells: int) -> Grid:
        """The same grid moved by whole cells (exact: the origin stays on the µm lattice)."""
        ox, oy = self.origin_um
        c = self.cell_um
        return Grid(
            ((ox + dx_cells * c) / UM_PER_MM, (oy + dy_cells * c) / UM_PER_MM),
            self.size_mm,
            self.cell_mm,
        )
