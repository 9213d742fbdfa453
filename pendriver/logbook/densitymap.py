"""A pass's puncture-count map, compressed, so a report can redraw it and a zone's maps can be
summed over a session without numpy.

The counts are a row-major ``shape = (rows, cols)`` array of unsigned 32-bit little-endian
integers (``counts[iy][ix]``, as :class:`pendriver.density.grid.Grid` lays them out), compressed
with zlib. ``origin_um`` is the lower-left corner of cell ``[0][0]`` and ``cell_um`` the side of
a square cell, both integer micrometres, so two maps on the same lattice line up exactly.
"""

from __future__ import annotations

import base64
import math
import sys
import zlib
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

_UINT32_MAX = 0xFFFFFFFF


def _u32(values: Iterable[int]) -> array[int]:
    out = array("I")
    if out.itemsize != 4:  # pragma: no cover - every platform we build for has 4-byte "I"
        out = array("L")
    out.extend(values)
    return out


@dataclass(frozen=True, slots=True)
class DensityMap:
    """Puncture counts per cell, compressed (see the module docstring for the layout)."""

    shape: tuple[int, int]
    origin_um: tuple[int, int]
    cell_um: int
    zcounts: bytes
    """zlib of the little-endian uint32 counts, row-major."""

    @classmethod
    def from_counts(
        cls,
        counts: Iterable[int],
        shape: tuple[int, int],
        origin_um: tuple[int, int],
        cell_um: int,
    ) -> DensityMap:
        """Compress ``counts`` (flat row-major, or anything iterable of ints: a numpy array's
        ``.ravel()`` works) into a map."""
        values = _u32(int(v) for v in counts)
        rows, cols = shape
        if rows < 0 or cols < 0 or len(values) != rows * cols:
            raise ValueError(f"{len(values)} counts do not fill a {rows} x {cols} map")
        if cell_um <= 0:
            raise ValueError(f"a density map's cell must be positive, got {cell_um} µm")
        if sys.byteorder == "big":  # pragma: no cover
            values.byteswap()
        return cls((rows, cols), origin_um, cell_um, zlib.compress(values.tobytes(), 6))

    def counts(self) -> array[int]:
        """The flat row-major counts, decompressed."""
        values = _u32(())
        values.frombytes(zlib.decompress(self.zcounts))
        if sys.byteorder == "big":  # pragma: no cover
            values.byteswap()
        if len(values) != self.shape[0] * self.shape[1]:
            raise ValueError("a density map's counts do not match its shape")
        return values

    def rows(self) -> list[list[int]]:
        """The counts as a list of rows (``rows()[iy][ix]``), for a report to draw."""
        flat = self.counts()
        cols = self.shape[1]
        return [list(flat[r * cols : (r + 1) * cols]) for r in range(self.shape[0])]

    @property
    def cell_area_cm2(self) -> float:
        side_cm = self.cell_um / 10_000
        return side_cm * side_cm

    def total(self) -> int:
        return sum(self.counts())

    def peak_per_cm2(self) -> float:
        """The densest cell, in punctures per cm²."""
        flat = self.counts()
        return (max(flat) if flat else 0) / self.cell_area_cm2

    def to_dict(self) -> dict[str, Any]:
        """Plain data: the compressed counts as standard base64 (RFC 4648, with padding)."""
        return {
            "shape": list(self.shape),
            "origin_um": list(self.origin_um),
            "cell_um": self.cell_um,
            "zcounts_b64": base64.b64encode(self.zcounts).decode("ascii"),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DensityMap:
        rows, cols = (int(v) for v in data["shape"])
        ox, oy = (int(v) for v in data["origin_um"])
        return cls(
            (rows, cols),
            (ox, oy),
            int(data["cell_um"]),
            base64.b64decode(data["zcounts_b64"], validate=True),
        )


def cumulative_peak_per_cm2(maps: Sequence[DensityMap]) -> float:
    """The densest cell of the sum of ``maps``, in punctures per cm².

    Maps on one lattice (same cell, origins a whole number of cells apart) are summed cell by
    cell on their union. Maps that do not line up cannot be summed exactly, so their peaks are
    added instead: an upper bound, which errs on the side of refusing another pass.
    """
    if not maps:
        return 0.0
    cell = maps[0].cell_um
    ox0, oy0 = maps[0].origin_um
    aligned = all(
        m.cell_um == cell
        and (m.origin_um[0] - ox0) % cell == 0
        and (m.origin_um[1] - oy0) % cell == 0
        for m in maps
    )
    if not aligned:
        return sum(m.peak_per_cm2() for m in maps)
    x0 = min(m.origin_um[0] for m in maps)
    y0 = min(m.origin_um[1] for m in maps)
    sums: dict[tuple[int, int], int] = {}
    for m in maps:
        dx = (m.origin_um[0] - x0) // cell
        dy = (m.origin_um[1] - y0) // cell
        cols = m.shape[1]
        for i, v in enumerate(m.counts()):
            if v:
                key = (i // cols + dy, i % cols + dx)
                sums[key] = sums.get(key, 0) + v
    peak = max(sums.values(), default=0)
    return peak / maps[0].cell_area_cm2


def sum_maps(maps: Sequence[DensityMap]) -> DensityMap:
    """The cell-by-cell sum of maps on one lattice, on their union (a zone's cumulative map).

    Raises ``ValueError`` if the maps do not line up (different cells or origins off the
    lattice): redraw them separately then.
    """
    if not maps:
        raise ValueError("no density maps to sum")
    cell = maps[0].cell_um
    ox0, oy0 = maps[0].origin_um
    for m in maps:
        if m.cell_um != cell or (m.origin_um[0] - ox0) % cell or (m.origin_um[1] - oy0) % cell:
            raise ValueError("density maps on different lattices cannot be summed cell by cell")
    x0 = min(m.origin_um[0] for m in maps)
    y0 = min(m.origin_um[1] for m in maps)
    x1 = max(m.origin_um[0] + m.shape[1] * cell for m in maps)
    y1 = max(m.origin_um[1] + m.shape[0] * cell for m in maps)
    cols = (x1 - x0) // cell
    rows = (y1 - y0) // cell
    total = [0] * (rows * cols)
    for m in maps:
        dx = (m.origin_um[0] - x0) // cell
        dy = (m.origin_um[1] - y0) // cell
        mc = m.shape[1]
        for i, v in enumerate(m.counts()):
            if v:
                total[(i // mc + dy) * cols + i % mc + dx] += v
    if max(total, default=0) > _UINT32_MAX:
        raise ValueError("a summed density map overflows 32-bit counts")
    return DensityMap.from_counts(total, (rows, cols), (x0, y0), cell)


def counts_on(
    maps: Sequence[DensityMap], shape: tuple[int, int], origin_um: tuple[int, int], cell_um: int
) -> list[int]:
    """The summed counts of ``maps`` on the lattice ``shape`` / ``origin_um`` / ``cell_um``,
    flat row-major (what the cells of a new pass's map already hold this session).

    A map on that lattice (same cell, origin a whole number of cells away) is added cell by
    cell, its cells outside the new map left out. A map that does not line up cannot be placed
    exactly, so its peak density is added to every cell: an upper bound, which errs on the side
    of stopping a pass early.
    """
    rows, cols = shape
    if rows < 0 or cols < 0 or cell_um <= 0:
        raise ValueError(f"not a lattice: {rows} x {cols} cells of {cell_um} µm")
    total = [0] * (rows * cols)
    spread = 0.0
    ox, oy = origin_um
    for m in maps:
        dx, rx = divmod(m.origin_um[0] - ox, cell_um)
        dy, ry = divmod(m.origin_um[1] - oy, cell_um)
        if m.cell_um != cell_um or rx or ry:
            spread += m.peak_per_cm2()
            continue
        mc = m.shape[1]
        for i, v in enumerate(m.counts()):
            if v:
                r, c = i // mc + dy, i % mc + dx
                if 0 <= r < rows and 0 <= c < cols:
                    total[r * cols + c] += v
    if spread:
        side_cm = cell_um / 10_000
        extra = math.ceil(spread * side_cm * side_cm - 1e-9)
        total = [v + extra for v in total]
    return total
