"""The live map: chunked telemetry gives the batch answer, and over-treatment is flagged at once."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from pendriver.density import Grid, density_counts, square_grid, stroke_times_from_counts
from pendriver.density.live import LiveDensity

GRID = Grid(origin_mm=(0.0, 0.0), size_mm=(20.0, 10.0), cell_mm=0.5)
NEEDLES = square_grid(4, 4, 0.6)


def telemetry(n: int = 200, rate_hz: float = 120.0) -> tuple[np.ndarray, ...]:
    """A pass along x at 20 mm/s, telemetry at 100 Hz, strokes at ``rate_hz``."""
    t = np.arange(n) / 100.0
    counts = np.floor(t * rate_hz).astype(np.int64)
    x = 2.0 + 20.0 * t * 0.8
    y = np.full(n, 5.0)
    return t, counts, x, y


@given(st.lists(st.integers(1, 40), min_size=1, max_size=30))
def test_any_chunking_gives_the_batch_map(sizes: list[int]) -> None:
    t, c, x, y = telemetry()
    live = LiveDensity(GRID, NEEDLES)
    start = 0
    for size in sizes:
        part = slice(start, start + size)
        live.feed(t[part], c[part], x[part], y[part])
        start += size
        if start >= len(t):
            break
    live.feed(t[start:], c[start:], x[start:], y[start:])
    batch, outside = density_counts(
        GRID, NEEDLES, stroke_times_from_counts(t, c), np.column_stack((t, x, y))
    )
    assert np.array_equal(live.counts, batch)
    assert live.kernel.outside == outside


@given(st.lists(st.integers(1, 12), min_size=1, max_size=40), st.integers(1, 40))
def test_alarms_after_each_chunk_are_exactly_the_cells_newly_over(
    sizes: list[int], limit: int
) -> None:
    # The check looks only at the cells a chunk touched; it must find exactly what a check of
    # the whole grid would, chunk after chunk, and never the same cell twice.
    t, c, x, y = telemetry(n=120, rate_hz=150.0)
    x = 2.0 + (x - 2.0) * 0.05  # a slow glide: cells fill up and cross the limit
    live = LiveDensity(GRID, NEEDLES, max_per_cm2=limit / GRID.cell_area_cm2)
    flagged = np.zeros(GRID.shape, dtype=bool)
    start = 0
    for size in [*sizes, len(t)]:
        part = slice(start, start + size)
        alarms = live.feed(t[part], c[part], x[part], y[part])
        start += size
        over = live.counts > limit
        new = over & ~flagged
        got = {(round(a.x_mm, 6), round(a.y_mm, 6)) for a in alarms}
        want = {
            (round(0.5 * ix + 0.25, 6), round(0.5 * iy + 0.25, 6))
            for iy, ix in zip(*np.nonzero(new), strict=True)
        }
        assert got == want and len(got) == len(alarms)
        flagged |= over
        if start >= len(t):
            break


def test_over_treatment_is_raised_once_per_cell_the_moment_it_happens() -> None:
    # The pen lingers on one spot: strokes pile up in the same cells.
    t = np.arange(100) / 100.0
    counts = np.floor(t * 150).astype(np.int64)
    x = np.full(100, 10.0)
    y = np.full(100, 5.0)
    live = LiveDensity(GRID, NEEDLES, max_per_cm2=2000.0)  # 5 punctures in a 0.25 mm² cell
    first_alarm_chunk = None
    for i in range(0, 100, 5):
        alarms = live.feed(t[i : i + 5], counts[i : i + 5], x[i : i + 5], y[i : i + 5])
        if alarms and first_alarm_chunk is None:
            first_alarm_chunk = i
            assert all(a.density_per_cm2 > 2000.0 for a in alarms)
            assert all(9.0 < a.x_mm < 11.5 and 4.0 < a.y_mm < 6.5 for a in alarms)
    assert first_alarm_chunk is not None and first_alarm_chunk < 10
    cells = {(a.x_mm, a.y_mm) for a in live.alarms}
    assert len(cells) == len(live.alarms)  # never twice for the same cell
    stats = live.stats(target_per_cm2=300.0)
    assert stats.over_treated_area_cm2 > 0


def test_no_alarm_without_a_maximum() -> None:
    t, c, x, y = telemetry()
    live = LiveDensity(GRID, NEEDLES)
    assert live.feed(t, c, x, y) == []
    assert live.density_per_cm2.max() > 0


def test_a_counter_that_wraps_or_resets_between_chunks_is_no_error() -> None:
    t = np.arange(40) / 100.0
    x = 2.0 + 20.0 * t
    y = np.full(40, 5.0)
    wrapped = (np.floor(t * 120).astype(np.int64) + (1 << 32) - 20) % (1 << 32)
    live = LiveDensity(GRID, NEEDLES)
    live.feed(t[:20], wrapped[:20], x[:20], y[:20])
    live.feed(t[20:], wrapped[20:], x[20:], y[20:])  # the u32 counter wrapped in between
    expected, _ = density_counts(
        GRID,
        NEEDLES,
        stroke_times_from_counts(t, np.floor(t * 120).astype(np.int64)),
        np.column_stack((t, x, y)),
    )
    assert np.array_equal(live.counts, expected)
    before = live.kernel.total
    live.feed(t[-1:] + 0.01, np.array([3]), x[-1:], y[-1:])  # the pen rebooted: count 3
    assert live.kernel.total == before  # nothing invented, nothing raised
