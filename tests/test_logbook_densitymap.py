"""The density maps a zone's passes leave, placed on a new pass's lattice (``counts_on``): exact
where the maps line up, never lower than the truth where they do not (property tests)."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from pendriver.logbook import DensityMap, counts_on, sum_maps

CELL = 500


@st.composite
def aligned_map(draw: st.DrawFn) -> DensityMap:
    rows = draw(st.integers(1, 6))
    cols = draw(st.integers(1, 6))
    ox = draw(st.integers(-4, 4)) * CELL
    oy = draw(st.integers(-4, 4)) * CELL
    counts = draw(st.lists(st.integers(0, 50), min_size=rows * cols, max_size=rows * cols))
    return DensityMap.from_counts(counts, (rows, cols), (ox, oy), CELL)


lattice = st.tuples(st.integers(1, 8), st.integers(1, 8), st.integers(-4, 4), st.integers(-4, 4))


@given(st.lists(aligned_map(), min_size=1, max_size=4), lattice)
def test_maps_on_the_lattice_are_placed_cell_by_cell(
    maps: list[DensityMap], where: tuple[int, int, int, int]
) -> None:
    rows, cols, gx, gy = where
    origin = (gx * CELL, gy * CELL)
    placed = counts_on(maps, (rows, cols), origin, CELL)
    total = sum_maps(maps)
    tx, ty = total.origin_um
    grid = total.rows()
    for r in range(rows):
        for c in range(cols):
            # the same cell in the sum's own frame, if the sum covers it
            sr = r + (origin[1] - ty) // CELL
            sc = c + (origin[0] - tx) // CELL
            inside = 0 <= sr < total.shape[0] and 0 <= sc < total.shape[1]
            assert placed[r * cols + c] == (grid[sr][sc] if inside else 0)


@given(aligned_map(), st.integers(1, CELL - 1), st.sampled_from([250, 500, 1000]), lattice)
def test_a_map_off_the_lattice_counts_its_peak_everywhere(
    dmap: DensityMap, shift: int, cell: int, where: tuple[int, int, int, int]
) -> None:
    """No cell of the new lattice is said to hold less than the densest cell of a map that
    cannot be placed on it: the pass is held to an upper bound, never stopped late."""
    off = DensityMap(dmap.shape, (dmap.origin_um[0] + shift, dmap.origin_um[1]), CELL, dmap.zcounts)
    rows, cols, gx, gy = where
    placed = counts_on([off], (rows, cols), (gx * cell, gy * cell), cell)
    at_least = math.ceil(off.peak_per_cm2() * (cell / 10_000) ** 2 - 1e-9)
    assert placed == [at_least] * (rows * cols)
