"""A density map small enough for a terminal, for `pen run` to show live during a pass.

Each character stands for a block of cells and shows their mean density on a five-step
shade scale relative to ``vmax`` (the target density is a good choice: full shade means "at
target"); cells above ``over`` show as ``!`` so over-treatment stands out even without colour.
Pure: a map in, lines out.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

SHADES = " ░▒▓█"
OVER = "!"


def terminal_heatmap(
    density: NDArray[np.floating],
    *,
    width: int,
    height: int,
    vmax: float,
    over: float | None = None,
) -> list[str]:
    """Lines picturing ``density[y, x]`` (per cm²), y up, in at most ``width`` × ``height``.

    The top line is the highest y, as on a plot of the zone. Plain characters only: a
    terminal front end styles the ``!`` (the CLI prints it red through rich).
    """
    if width < 1 or height < 1:
        raise ValueError("a heatmap needs at least one row and one column")
    if vmax <= 0:
        raise ValueError(f"vmax must be positive, got {vmax!r}")
    ny, nx = density.shape
    cols, rows = min(width, nx), min(height, ny)
    # Block means: the map cut into rows × cols nearly equal blocks.
    y_edges = np.linspace(0, ny, rows + 1).astype(int)
    x_edges = np.linspace(0, nx, cols + 1).astype(int)
    lines = []
    for r in reversed(range(rows)):
        band = density[y_edges[r] : y_edges[r + 1]]
        chars = []
        for c in range(cols):
            block = band[:, x_edges[c] : x_edges[c + 1]]
            value = float(block.mean()) if block.size else 0.0
            peak = float(block.max()) if block.size else 0.0
            if over is not None and peak > over:
                chars.append(OVER)
                continue
            level = 0 if value <= 0 else min(len(SHADES) - 1, 1 + int(value / vmax * 3.999))
            chars.append(SHADES[level])
        lines.append("".join(chars))
    return lines
