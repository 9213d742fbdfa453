"""The density kernel: conservation, translation, exact agreement with the reference, streaming.

Everything is property-based: random grids (origin and cell on the µm lattice), layouts,
trajectories that wander off the grid, and headings. Exactness is cell-for-cell equality with
the pure-Python reference, which follows the same arithmetic contract.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from pendriver.density import (
    DensityKernel,
    Grid,
    Roller,
    circle,
    density_counts,
    from_cartridge,
    reference_counts,
    roller_strokes,
    spiral,
    square_grid,
    stroke_times_from_counts,
    stroke_times_uniform,
)
from pendriver.density import kernel as kernel_module
from pendriver.density.stroke_classes import StrokeClasses

Arr = NDArray[np.float64]

coord = st.floats(-30.0, 30.0, allow_nan=False)


@st.composite
def grids(draw: st.DrawFn) -> Grid:
    cell_um = draw(st.integers(1, 3000))
    ox = draw(st.integers(-10_000, 10_000))
    oy = draw(st.integers(-10_000, 10_000))
    nx = draw(st.integers(1, 30))
    ny = draw(st.integers(1, 30))
    return Grid((ox / 1000, oy / 1000), (nx * cell_um / 1000, ny * cell_um / 1000), cell_um / 1000)


@st.composite
def layouts(draw: st.DrawFn) -> Arr:
    pts = draw(st.lists(st.tuples(coord, coord), min_size=1, max_size=12))
    return np.array(pts, dtype=np.float64) / 4.0


@st.composite
def tracks(draw: st.DrawFn, heading: bool | None = None) -> Arr:
    m = draw(st.integers(1, 8))
    dts = draw(st.lists(st.floats(0.001, 2.0), min_size=m, max_size=m))
    t = np.cumsum(dts) - draw(st.floats(0.0, 3.0))
    xy = np.array(draw(st.lists(st.tuples(coord, coord), min_size=m, max_size=m)))
    with_heading = draw(st.booleans()) if heading is None else heading
    if not with_heading:
        return np.column_stack((t, xy))
    h = np.array(draw(st.lists(st.floats(-7.0, 7.0), min_size=m, max_size=m)))
    return np.column_stack((t, xy, h))


@st.composite
def strokes_for(draw: st.DrawFn, track: Arr) -> Arr:
    t0, t1 = float(track[0, 0]) - 0.5, float(track[-1, 0]) + 0.5
    times = draw(st.lists(st.floats(t0, t1), max_size=40))
    exact = [float(v) for v in track[:, 0]]  # strokes exactly on samples are edge cases
    return np.array(times + draw(st.lists(st.sampled_from(exact), max_size=3)), dtype=np.float64)


@st.composite
def cases(draw: st.DrawFn) -> tuple[Grid, Arr, Arr, Arr]:
    tr = draw(tracks())
    return draw(grids()), draw(layouts()), draw(strokes_for(tr)), tr


@settings(max_examples=300, deadline=None)
@given(cases())
def test_exact_agreement_with_reference(case: tuple[Grid, Arr, Arr, Arr]) -> None:
    g, needles, strokes, track = case
    counts, outside = density_counts(g, needles, strokes, track)
    ref, ref_outside = reference_counts(g, needles.tolist(), strokes.tolist(), track.tolist())
    assert counts.shape == g.shape
    assert counts.dtype == np.int64
    assert np.array_equal(counts, np.array(ref, dtype=np.int64).reshape(g.shape))
    assert outside == ref_outside


@settings(max_examples=200, deadline=None)
@given(cases())
def test_every_puncture_is_counted_once(case: tuple[Grid, Arr, Arr, Arr]) -> None:
    g, needles, strokes, track = case
    counts, outside = density_counts(g, needles, strokes, track)
    assert int(counts.sum()) + outside == len(strokes) * len(needles)
    assert outside >= 0 and (counts >= 0).all()


@settings(max_examples=200, deadline=None)
@given(cases(), st.data())
def test_streaming_equals_batch(case: tuple[Grid, Arr, Arr, Arr], data: st.DataObject) -> None:
    g, needles, strokes, track = case
    batch, batch_outside = density_counts(g, needles, strokes, track)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(strokes)), max_size=6)))
    live = DensityKernel(g, needles)
    for a, b in zip([0, *cuts], [*cuts, len(strokes)], strict=True):
        live.add(strokes[a:b], track)
    assert np.array_equal(live.counts, batch)
    assert live.outside == batch_outside
    assert live.total == len(strokes) * len(needles)


@pytest.mark.parametrize("needle_x_mm", [-0.5, 0.0])
def test_needles_far_off_a_one_cell_grid_neither_crash_nor_count(needle_x_mm: float) -> None:
    """Found by hypothesis: a 6 µm grid, needles half a millimetre off the tip. The stroke
    histogram's shifted spans then lie wholly off the grid, and slicing them wrapped round to
    a wrong-sized piece (ValueError) instead of adding nothing."""
    g = Grid(origin_mm=(0.0, 0.0), size_mm=(0.006, 0.006), cell_mm=0.006)
    needles = np.array([[0.0, -0.5], [needle_x_mm, -0.5]])
    strokes = np.ones(5)
    track = np.array([[1.0, 0.0, -1.0]])
    counts, outside = density_counts(g, needles, strokes, track)
    assert int(counts.sum()) + outside == len(strokes) * len(needles)
    live = DensityKernel(g, needles)
    for chunk in (strokes[:2], strokes[2:]):
        live.add(chunk, track)
    assert np.array_equal(live.counts, counts) and live.outside == outside


@settings(max_examples=150, deadline=None)
@given(
    grids(),
    layouts(),
    st.data(),
    st.integers(-50_000, 50_000),
    st.integers(-50_000, 50_000),
)
def test_translating_track_and_origin_together_keeps_the_map(
    g: Grid, needles: Arr, data: st.DataObject, dx_um: int, dy_um: int
) -> None:
    # Positions on the µm lattice, so the shift is exact in µm after quantisation.
    track = data.draw(tracks())
    track[:, 1:3] = np.round(track[:, 1:3] * 1000) / 1000
    strokes = data.draw(strokes_for(track))
    moved = track.copy()
    moved[:, 1] = (np.round(track[:, 1] * 1000) + dx_um) / 1000
    moved[:, 2] = (np.round(track[:, 2] * 1000) + dy_um) / 1000
    ox, oy = g.origin_um
    g2 = Grid(((ox + dx_um) / 1000, (oy + dy_um) / 1000), g.size_mm, g.cell_mm)
    a, a_out = density_counts(g, needles, strokes, track)
    b, b_out = density_counts(g2, needles, strokes, moved)
    assert np.array_equal(a, b) and a_out == b_out


@settings(max_examples=150, deadline=None)
@given(layouts(), st.data(), st.integers(-5, 5), st.integers(-5, 5), st.integers(100, 2000))
def test_translating_by_whole_cells_shifts_the_map(
    needles: Arr, data: st.DataObject, kx: int, ky: int, cell_um: int
) -> None:
    track = data.draw(tracks())
    track[:, 1:3] = np.round(track[:, 1:3] * 1000) / 1000
    strokes = data.draw(strokes_for(track))
    # A grid large enough that nothing falls outside, before or after the shift.
    span = 200 * cell_um // 1000 + 100
    g = Grid((-span / 2, -span / 2), (span, span), cell_um / 1000)
    moved = track.copy()
    moved[:, 1] = (np.round(track[:, 1] * 1000) + kx * cell_um) / 1000
    moved[:, 2] = (np.round(track[:, 2] * 1000) + ky * cell_um) / 1000
    a, a_out = density_counts(g, needles, strokes, track)
    b, b_out = density_counts(g, needles, strokes, moved)
    assert a_out == b_out == 0
    assert np.array_equal(np.roll(a, (ky, kx), axis=(0, 1)), b)


@st.composite
def telemetry_cases(draw: st.DrawFn) -> tuple[Grid, Arr, Arr, Arr]:
    tr = draw(tracks(heading=False))
    return draw(grids()), draw(layouts()), draw(strokes_for(tr)), tr


@settings(max_examples=200, deadline=None)
@given(telemetry_cases())
def test_both_ways_of_binning_agree_with_the_reference(case: tuple[Grid, Arr, Arr, Arr]) -> None:
    # Without a heading a batch is counted per puncture or through the strokes' histogram per
    # (class, cell), whichever costs less; both are forced here, on the same random cases.
    g, needles, strokes, track = case
    ref, ref_outside = reference_counts(g, needles.tolist(), strokes.tolist(), track.tolist())
    for binning in ("punctures", "histogram"):
        counts, outside = density_counts(g, needles, strokes, track, binning=binning)
        assert np.array_equal(counts, np.array(ref, dtype=np.int64).reshape(g.shape)), binning
        assert outside == ref_outside, binning


def test_a_long_batch_is_counted_in_runs_each_binned_its_cheaper_way(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Runs of 700 strokes: the ones along the spread-out start of the track are counted per
    # puncture, the ones where the pen lingers by histogram; the sum is the reference's.
    monkeypatch.setattr(kernel_module, "_CLASS_RUN", 700)
    chosen: list[bool] = []
    cheaper = StrokeClasses.histogram_cheaper

    def spy(self: StrokeClasses, strokes: int, span: int) -> bool:
        chosen.append(cheaper(self, strokes, span))
        return chosen[-1]

    monkeypatch.setattr(StrokeClasses, "histogram_cheaper", spy)
    t = np.linspace(0.0, 30.0, 301)
    x = np.where(t < 10.0, t * 4.0 - 20.0, 20.0 + np.sin(t) * 0.3)
    y = np.where(t < 10.0, np.cos(t) * 15.0, 1.0 + np.cos(t) * 0.3)
    track = np.column_stack((t, x, y))
    g = Grid((-25.0, -20.0), (50.0, 40.0), 0.5)
    needles = circle(12, 1.0)
    strokes = stroke_times_uniform(0.0, 30.0, 150.0)
    counts, outside = density_counts(g, needles, strokes, track)
    ref, ref_out = reference_counts(g, needles.tolist(), strokes.tolist(), track.tolist())
    assert np.array_equal(counts, np.array(ref)) and outside == ref_out
    assert True in chosen and False in chosen


@pytest.mark.parametrize("corner", [(-1.0, -1.0), (1.0, 1.0)])
def test_histogram_binning_at_the_edge_of_the_padding(corner: tuple[float, float]) -> None:
    # Cell 1.001 mm and a needle 0.5 mm off the axis: the padding is one cell, a stroke far
    # off the grid is clamped to its edge, and some shifted prefix sums then start before the
    # padded grid's first cell (or end after its last); they must be cut, not wrapped.
    g = Grid((0.0, 0.0), (5.005, 3.003), 1.001)
    needles = np.array([[-0.5, 0.0], [0.0, -0.5], [0.5, 0.0], [0.0, 0.5], [0.3, 0.2]])
    far = np.array(corner) * 1e4
    track = np.array([[0.0, *far], [1.0, *(far * 1.1)], [2.0, 2.5, 1.5], [3.0, *far]])
    strokes = stroke_times_uniform(0.0, 3.0, 50.0)
    ref, ref_out = reference_counts(g, needles.tolist(), strokes.tolist(), track.tolist())
    counts, outside = density_counts(g, needles, strokes, track, binning="histogram")
    assert np.array_equal(counts, np.array(ref)) and outside == ref_out


def test_the_cost_model_bins_big_batches_by_histogram_and_small_ones_per_puncture() -> None:
    kernel = DensityKernel(Grid((-60.0, -60.0), (120.0, 120.0), 0.5), circle(16, 1.0))
    classes = kernel._classes
    assert classes is not None
    span = 200 * 244  # rows of the padded grid a wandering pass covers
    assert classes.histogram_cheaper(625_000, span)  # 1e7 punctures
    assert not classes.histogram_cheaper(6_250, span)  # 1e5 punctures
    with pytest.raises(ValueError, match="binning"):
        DensityKernel(kernel.grid, circle(16, 1.0), binning="fast")  # type: ignore[arg-type]


def test_large_batch_spans_many_blocks_and_matches_reference() -> None:
    # More punctures than one bincount batch, so the block and flush logic is exercised.
    rng = np.random.default_rng(5)
    t = np.linspace(0.0, 60.0, 400)
    track = np.column_stack(
        (t, rng.uniform(-20, 20, 400), rng.uniform(-20, 20, 400), rng.uniform(-3, 3, 400))
    )
    g = Grid((-15.0, -12.5), (30.0, 25.0), 0.7)
    needles = spiral(24, 2.0)
    strokes = stroke_times_uniform(-1.0, 61.0, 1200.0)
    counts, outside = density_counts(g, needles, strokes, track)
    ref, ref_out = reference_counts(g, needles.tolist(), strokes.tolist(), track.tolist())
    assert np.array_equal(counts, np.array(ref)) and outside == ref_out
    assert counts.sum() + outside == len(strokes) * 24 > (1 << 20)


def test_heading_rotates_the_layout() -> None:
    g = Grid((-5.0, -5.0), (10.0, 10.0), 1.0)
    track = np.array([[0.0, 0.0, 0.0, math.pi / 2], [1.0, 0.0, 0.0, math.pi / 2]])
    counts, _ = density_counts(g, [(2.5, 0.0)], [0.5], track)
    # (2.5, 0) turned by 90°: (0, 2.5) → cell ix 5, iy 7
    assert counts[7, 5] == 1 and counts.sum() == 1


def test_stroke_time_helpers() -> None:
    assert np.allclose(stroke_times_uniform(0.0, 0.05, 100.0), [0.0, 0.01, 0.02, 0.03, 0.04])
    times = stroke_times_from_counts([0.0, 1.0, 1.5, 2.0], [10, 12, 12, 13])
    assert np.allclose(times, [0.5, 1.0, 2.0])
    with pytest.raises(ValueError):
        stroke_times_from_counts([0.0, 1.0], [5, 4])


def test_layouts() -> None:
    assert circle(16, 1.0).shape == (16, 2)
    assert np.allclose(np.hypot(*circle(8, 2.0).T), 2.0)
    assert square_grid(3, 4, 0.5).shape == (12, 2)
    assert np.allclose(square_grid(3, 3, 1.0).mean(axis=0), 0.0)
    assert (np.hypot(*spiral(36, 3.0).T) <= 3.0).all()
    cart = from_cartridge(((0.0, 0.5), (-0.25, 0.0)))
    assert cart.dtype == np.float64 and cart.shape == (2, 2)
    with pytest.raises(ValueError):
        from_cartridge(())


def test_grid_shape_and_density() -> None:
    g = Grid((0.0, 0.0), (10.0, 5.05), 1.0)
    assert g.shape == (6, 10)
    assert g.cell_area_cm2 == pytest.approx(0.01)
    assert g.density_per_cm2(np.ones(g.shape))[0, 0] == pytest.approx(100.0)
    with pytest.raises(ValueError):
        Grid((0.0005, 0.0), (1.0, 1.0), 0.1)


def test_roller_rows_touch_down_every_pitch() -> None:
    roller = Roller(diameter_mm=20.0, width_mm=10.0, rows=5, needles_around=16)
    pitch = roller.pitch_mm
    assert pitch == pytest.approx(math.pi * 20.0 / 16)
    track = np.array([[0.0, 0.0, 0.0], [10.0, 100.0, 0.0]])
    times, headed = roller_strokes(roller, track)
    assert len(times) == math.floor(100.0 / pitch) + 1
    assert np.allclose(np.diff(times), pitch / 10.0)
    assert np.allclose(headed[:, 3], 0.0)
    g = Grid((-10.0, -10.0), (120.0, 20.0), 1.0)
    counts, outside = density_counts(g, roller.needles(), times, headed)
    assert outside == 0 and counts.sum() == 5 * len(times)
    # needles across the width (y), rolling along x: rows at y = -4, -2, 0, 2, 4 mm
    assert set(np.nonzero(counts.sum(axis=1))[0]) == {6, 8, 10, 12, 14}


@pytest.mark.parametrize(
    ("t", "x", "y", "heading", "message"),
    [
        ([0.0, 1.0], [0.0, float("nan")], [0.0, 0.0], None, "finite"),
        ([0.0, float("inf")], [0.0, 0.0], [0.0, 0.0], None, "finite"),
        ([0.0, 1.0], [0.0, 2e9], [0.0, 0.0], None, "within 1e9 mm"),
        ([0.0, 1.0], [0.0, 0.0], [0.0, 0.0], [0.0, 2e9], "headings within"),
        ([0.0, 0.0], [0.0, 0.0], [0.0, 0.0], None, "strictly increasing"),
        ([0.0, 1.0], [0.0], [0.0, 0.0], None, "same length"),
    ],
)
def test_a_live_chunk_with_bad_values_is_refused_and_counts_nothing(
    t: list[float], x: list[float], y: list[float], heading: list[float] | None, message: str
) -> None:
    kernel = DensityKernel(Grid((-5.0, -5.0), (10.0, 10.0), 0.5), circle(8, 1.0))
    kernel.add_few([0.5], [0.0, 1.0], [0.0, 1.0], [0.0, 0.0])
    before = kernel.counts.copy()
    with pytest.raises(ValueError, match=message):
        kernel.add_few([0.5], t, x, y, heading)
    assert np.array_equal(kernel.counts, before) and kernel.total == 8


@settings(max_examples=150, deadline=None)
@given(cases())
def test_the_live_path_on_python_lists_equals_the_batch(case: tuple[Grid, Arr, Arr, Arr]) -> None:
    g, needles, strokes, track = case
    batch, outside = density_counts(g, needles, strokes, track)
    live = DensityKernel(g, needles)
    cols = track.T.tolist()
    for k in range(0, len(strokes), 2):  # two strokes at a time, as a 10 ms chunk holds
        live.add_few(strokes[k : k + 2].tolist(), *cols)
    assert np.array_equal(live.counts, batch) and live.outside == outside
