"""A density heatmap as a PNG: for a treatment record, a report, or a look at coverage.

Drawn with matplotlib's object API on the Agg canvas (no pyplot, no global figure state, no
display needed), so it works the same in a script, a server and CI. matplotlib is the
``plot`` extra; without it the call raises a one-line error saying how to install it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray


class PlotUnavailable(RuntimeError):
    """matplotlib (the ``plot`` extra) is not installed, so no picture can be drawn."""


def write_heatmap_png(
    path: str | Path,
    density: NDArray[np.floating],
    *,
    origin_mm: tuple[float, float],
    cell_mm: float,
    zone_mm: tuple[float, float, float, float] | None = None,
    vmax: float | None = None,
    title: str = "",
    dpi: int = 120,
) -> Path:
    """Write ``density[y, x]`` (punctures/cm²) as a heatmap with a colour bar.

    ``zone_mm`` is the treatment zone as (x, y, width, height) in mm, drawn as an outline;
    ``vmax`` pins the top of the colour scale (for comparable pictures across passes).
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.patches import Rectangle
    except ImportError:
        raise PlotUnavailable(
            "density pictures need matplotlib: pip install 'pendriver[plot]'"
        ) from None
    ny, nx = density.shape
    x0, y0 = origin_mm
    extent = (x0, x0 + nx * cell_mm, y0, y0 + ny * cell_mm)
    figure = Figure(figsize=(6.4, 6.4 * max(ny, 1) / max(nx, 1) + 0.8), dpi=dpi)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(
        density,
        origin="lower",
        extent=extent,
        cmap="magma",
        vmin=0.0,
        vmax=vmax if vmax is not None else max(float(density.max()), 1.0),
        interpolation="nearest",
    )
    bar = figure.colorbar(image, ax=axes)
    bar.set_label("punctures / cm²")
    if zone_mm is not None:
        zx, zy, zw, zh = zone_mm
        axes.add_patch(Rectangle((zx, zy), zw, zh, fill=False, edgecolor="cyan", linewidth=1.5))
    axes.set_xlabel("x (mm)")
    axes.set_ylabel("y (mm)")
    if title:
        axes.set_title(title)
    out = Path(path)
    figure.savefig(out, format="png")
    return out
