"""Pass statistics from a density map: exact on maps whose answers are known by hand."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from pendriver.density.stats import density_stats

CELL = 0.01  # cm² (1 mm cells)


def test_a_hand_made_map() -> None:
    counts = np.array([[0, 2, 4], [4, 0, 10]])
    zone = np.array([[True, True, True], [True, True, False]])
    stats = density_stats(
        counts, CELL, zone=zone, outside_grid=3, target_per_cm2=300, max_per_cm2=500
    )
    assert stats.punctures == 20
    assert stats.punctures_outside_zone == 10 + 3  # the masked cell and the ones off the grid
    assert stats.zone_area_cm2 == pytest.approx(5 * CELL)
    assert stats.treated_area_cm2 == pytest.approx(3 * CELL)  # 2, 4, 4
    assert stats.mean_per_cm2 == pytest.approx((200 + 400 + 400) / 3)
    assert stats.median_per_cm2 == pytest.approx(400)
    assert stats.max_per_cm2 == pytest.approx(400)
    assert stats.target_area_cm2 == pytest.approx(2 * CELL)  # 400, 400 >= 300
    assert stats.over_treated_area_cm2 == 0.0
    assert stats.coverage == pytest.approx(3 / 5)
    assert stats.uniformity_cv == pytest.approx(np.std([200, 400, 400]) / (1000 / 3))


def test_an_even_map_has_zero_variation_and_nothing_over_the_limit() -> None:
    stats = density_stats(np.full((4, 5), 3), CELL, max_per_cm2=300)
    assert stats.uniformity_cv == 0.0
    assert stats.over_treated_area_cm2 == 0.0
    assert stats.coverage == 1.0


def test_an_untreated_map() -> None:
    stats = density_stats(np.zeros((3, 3), dtype=np.int64), CELL)
    assert (stats.treated_area_cm2, stats.mean_per_cm2, stats.max_per_cm2) == (0.0, 0.0, 0.0)
    assert stats.coverage == 0.0


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="cell area"):
        density_stats(np.zeros((2, 2), dtype=np.int64), 0.0)
    with pytest.raises(ValueError, match="does not match"):
        density_stats(np.zeros((2, 2), dtype=np.int64), CELL, zone=np.ones((3, 2), dtype=bool))


@given(
    arrays(np.int64, st.tuples(st.integers(1, 8), st.integers(1, 8)), elements=st.integers(0, 50))
)
def test_properties_of_any_map(counts: np.ndarray) -> None:
    stats = density_stats(counts, CELL, target_per_cm2=1000, max_per_cm2=2000)
    assert stats.punctures == counts.sum()
    assert stats.punctures_outside_zone == 0
    assert 0 <= stats.treated_area_cm2 <= stats.zone_area_cm2
    assert stats.over_treated_area_cm2 <= stats.target_area_cm2 <= stats.treated_area_cm2
    if stats.treated_area_cm2:
        assert 0 < stats.median_per_cm2 <= stats.p95_per_cm2 <= stats.max_per_cm2
        assert stats.max_per_cm2 == pytest.approx(counts.max() / CELL)
    assert any("uniformity" in line for line in stats.lines())
