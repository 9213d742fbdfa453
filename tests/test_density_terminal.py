"""The terminal density map: shades by density, over-treatment marked, y up, sized to fit."""

from __future__ import annotations

import numpy as np
import pytest

from pendriver.density.terminal import OVER, SHADES, terminal_heatmap


def test_shades_follow_density_and_the_top_line_is_the_highest_y() -> None:
    density = np.array([[0.0, 100.0, 200.0, 300.0], [400.0, 400.0, 400.0, 400.0]])
    lines = terminal_heatmap(density, width=10, height=10, vmax=400)
    assert lines == [SHADES[4] * 4, SHADES[0] + SHADES[1] + SHADES[2] + SHADES[3]]


def test_over_treated_blocks_are_marked() -> None:
    density = np.zeros((4, 4))
    density[0, 3] = 900.0
    lines = terminal_heatmap(density, width=2, height=2, vmax=300, over=600)
    assert lines[-1][-1] == OVER  # bottom right block holds the hot cell
    assert OVER not in lines[0]


def test_a_large_map_is_reduced_to_the_size_asked() -> None:
    lines = terminal_heatmap(np.ones((300, 500)), width=40, height=12, vmax=1.0)
    assert len(lines) == 12
    assert {len(line) for line in lines} == {40}


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError):
        terminal_heatmap(np.ones((2, 2)), width=0, height=2, vmax=1.0)
    with pytest.raises(ValueError):
        terminal_heatmap(np.ones((2, 2)), width=2, height=2, vmax=0.0)
