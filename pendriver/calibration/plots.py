"""A calibration's two pictures, as PNG: measured against set, and the error against set.

The first shows the scale as a whole (is it the right scale, the right way round); the second
is the one an engineer reads: each reading's error beside the ±tolerance band, as found and
as left, so the correction and what remains of it are seen at once. Depth readings show their
approach (▲ from below, ▼ from above: backlash is the gap between them) and the readings the
outlier rule rejected (×). Colours are the Okabe–Ito pair (vermillion as found, blue as left)
and the phases differ by marker fill and line style too, for grey print and colour-blind
readers.

Drawn like :mod:`pendriver.density.picture`: matplotlib's object API on the Agg canvas (no
pyplot, no global state, no display), imported only when a picture is asked for; without
matplotlib (the ``plot`` extra) the call raises :class:`~pendriver.density.picture.PlotUnavailable`,
the one error the CLI already reports for a missing plotting library.

The size suits an A4 page at full text width (7 × 4.2 in at 150 dpi): the report prints them
at about their own size, so the 9–11 pt text on them prints at 9–11 pt.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..density.picture import PlotUnavailable
from .readings import PHASES, PointSummary, Row, rows, summarise, tolerance_in_error_units
from .record import CalibrationRecord

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

PLOT_NAMES = ("measured", "error")
"""The pictures :func:`calibration_plots` draws, in the report's order."""
FIGSIZE_IN = (7.0, 4.2)
DPI = 150

AS_FOUND = "#D55E00"
AS_LEFT = "#0072B2"
BAND = "#cfe8cf"
BAND_EDGE = "#4d9a4d"
COLOURS = {"as found": AS_FOUND, "as left": AS_LEFT}


def _matplotlib() -> tuple[Any, Any]:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotUnavailable(
            "calibration plots need matplotlib: pip install 'pendriver[plot]'"
        ) from None
    return Figure, FigureCanvasAgg


def _text(value: str) -> str:
    """A person's text safe for matplotlib: a ``$`` would start mathtext (and an unbalanced
    one raises), so it is escaped."""
    return value.replace("$", r"\$")


def _date(record: CalibrationRecord) -> str:
    try:
        t = datetime.fromisoformat(record.started_at)
    except ValueError:
        return record.started_at[:10]
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.astimezone(UTC).strftime("%Y-%m-%d")


def _units(record: CalibrationRecord) -> tuple[str, str]:
    """(quantity unit, error unit)."""
    return ("mm", "mm") if record.kind == "depth" else ("Hz", "%")


def _figure(record: CalibrationRecord, what: str, dpi: int) -> tuple[Figure, Axes]:
    figure_cls, canvas_cls = _matplotlib()
    figure = figure_cls(figsize=FIGSIZE_IN, dpi=dpi, layout="constrained")
    canvas_cls(figure)
    axes = figure.add_subplot()
    kind = "depth" if record.kind == "depth" else "stroke-rate"
    figure.suptitle(
        _text(
            f"Pen {record.pen_serial} · {kind} calibration {_date(record)} · "
            f"{record.verdict.upper()}"
        ),
        fontsize=11,
        fontweight="bold",
    )
    axes.set_title(what, fontsize=10)
    axes.tick_params(labelsize=9)
    axes.grid(True, color="#dddddd", linewidth=0.6)
    axes.set_axisbelow(True)
    return figure, axes


def _png(figure: Figure, title: str) -> bytes:
    out = io.BytesIO()
    figure.savefig(out, format="png", metadata={"Title": title, "Software": None})
    return out.getvalue()


def _x_range(readings: Sequence[Row]) -> tuple[float, float]:
    xs = [r.setpoint for r in readings if math.isfinite(r.setpoint)]
    if not xs:
        return 0.0, 1.0
    lo, hi = min(xs), max(xs)
    pad = (hi - lo) * 0.06 or max(abs(hi) * 0.1, 0.1)
    return lo - pad, hi + pad


_MARKERS = {1: "^", -1: "v", 0: "o"}
_APPROACH = {1: "up approach", -1: "down approach", 0: ""}


def _scatter(
    axes: Axes,
    record: CalibrationRecord,
    readings: Sequence[Row],
    y_of: str,
    shift: float,
) -> None:
    """Every accepted reading of each phase (hollow as found, filled as left), one marker
    shape per approach; the up and down readings of a set point drawn ``shift`` apart so
    both stay visible."""
    for phase in PHASES:
        colour = COLOURS[phase]
        for direction in (1, -1, 0):
            pts = [
                r
                for r in readings
                if r.phase == phase and r.direction == direction and not r.rejected
            ]
            if not pts:
                continue
            approach = _APPROACH[direction]
            axes.scatter(
                [r.setpoint - direction * shift for r in pts],
                [getattr(r, y_of) for r in pts],
                s=30,
                marker=_MARKERS[direction],
                facecolors="none" if phase == "as found" else colour,
                edgecolors=colour,
                linewidths=1.2,
                label=f"{phase}, {approach}" if approach else phase,
                zorder=3,
            )
    bad = [r for r in readings if r.rejected]
    if bad:
        axes.scatter(
            [r.setpoint - r.direction * shift for r in bad],
            [getattr(r, y_of) for r in bad],
            s=55,
            marker="x",
            color="black",
            linewidths=1.4,
            label="rejected reading",
            zorder=4,
        )
    if not any(r.phase == "as left" for r in readings):
        why = "rejected" if record.verdict == "rejected" else "no readings"
        axes.plot([], [], " ", label=f"as left: not verified ({why})")


def _rank(label: str) -> tuple[int, int]:
    """Where an entry goes in the legend: a column per phase (readings, then the mean), the
    reference lines and the rejected readings in the third."""
    for column, phase in enumerate(PHASES):
        if label.startswith(phase):
            rest = label[len(phase) :]
            row = 0 if "up" in rest else 1 if "down" in rest else 3 if "mean" in rest else 2
            return column, row
    return len(PHASES), 0 if "tolerance" in label else 1 if "ideal" in label else 2


def _legend(axes: Axes) -> None:
    """Below the axes, so no reading hides behind it; as found in one column, as left in the
    next, so a reader finds each phase's markers together."""
    handles, labels = axes.get_legend_handles_labels()
    columns: list[list[tuple[Any, str]]] = [[] for _ in range(len(PHASES) + 1)]
    for handle, label in sorted(zip(handles, labels, strict=True), key=lambda hl: _rank(hl[1])):
        columns[_rank(label)[0]].append((handle, label))
    columns = [c for c in columns if c]
    depth = max(len(c) for c in columns)
    blank = axes.plot([], [], " ")[0]
    ordered = [e for c in columns for e in c + [(blank, "")] * (depth - len(c))]
    axes.legend(
        [h for h, _ in ordered],
        [lab for _, lab in ordered],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.15),
        ncol=len(columns),
        fontsize=8.5,
        frameon=False,
        handletextpad=0.4,
        columnspacing=2.0,
    )


def _mean_lines(
    axes: Axes, summary: Sequence[PointSummary], value: str, width: float, suffix: str
) -> None:
    """Each phase's set-point means (``value``: ``mean`` or ``error``) joined, dashed as found
    and solid as left."""
    for phase in PHASES:
        points = [p for p in summary if p.phase == phase]
        if points:
            axes.plot(
                [p.setpoint for p in points],
                [getattr(p, value) for p in points],
                color=COLOURS[phase],
                linewidth=width,
                linestyle="--" if phase == "as found" else "-",
                label=f"{phase} mean{suffix}",
                zorder=2,
            )


def measured_vs_set_png(record: CalibrationRecord, *, dpi: int = DPI) -> bytes:
    """Measured against set, with the ideal line and the tolerance band around it."""
    unit, _ = _units(record)
    readings = rows(record)
    figure, axes = _figure(record, "Measured against set point", dpi)
    x0, x1 = _x_range(readings)
    xs = [x0, x1]
    if record.kind == "depth":
        low = [x - record.tolerance for x in xs]
        high = [x + record.tolerance for x in xs]
        band = f"±{record.tolerance:.3f} mm tolerance"
    else:
        low = [x * (1 - record.tolerance) for x in xs]
        high = [x * (1 + record.tolerance) for x in xs]
        band = f"±{100 * record.tolerance:.2f} % tolerance"
    axes.fill_between(xs, low, high, color=BAND, edgecolor=BAND_EDGE, linewidth=0.6, label=band)
    axes.plot(xs, xs, color="black", linewidth=0.9, label="ideal: measured = set", zorder=2)
    _mean_lines(axes, summarise(record, readings), "mean", 1.0, "")
    _scatter(axes, record, readings, "measured", 0.0)
    if not readings:
        axes.text(0.5, 0.5, "no readings recorded", transform=axes.transAxes, ha="center")
    axes.set_xlim(x0, x1)
    axes.set_ylim(x0, x1)
    name = "depth" if record.kind == "depth" else "stroke rate"
    axes.set_xlabel(f"set {name} ({unit})", fontsize=10)
    axes.set_ylabel(f"measured {name} ({unit})", fontsize=10)
    _legend(axes)
    return _png(figure, f"{record.pen_serial} {record.kind} calibration: measured vs set")


def error_vs_set_png(record: CalibrationRecord, *, dpi: int = DPI) -> bytes:
    """Each reading's error beside the tolerance band, the set points' means joined (dashed as
    found, solid as left)."""
    unit, err_unit = _units(record)
    readings = rows(record)
    tol = tolerance_in_error_units(record)
    figure, axes = _figure(record, "Error (measured − set) against set point", dpi)
    x0, x1 = _x_range(readings)
    tol_text = f"±{tol:.3f} mm" if record.kind == "depth" else f"±{tol:.2f} %"
    axes.axhspan(-tol, tol, color=BAND, zorder=0, linewidth=0, label=f"{tol_text} tolerance")
    for y in (-tol, tol):
        axes.axhline(y, color=BAND_EDGE, linewidth=0.8, linestyle=":", zorder=1)
    axes.axhline(0.0, color="black", linewidth=0.8, zorder=1)
    suffix = " (up + down)/2" if record.kind == "depth" else ""
    _mean_lines(axes, summarise(record, readings), "error", 1.3, suffix)
    _scatter(axes, record, readings, "error", (x1 - x0) * 0.006)
    errors = [abs(r.error) for r in readings if math.isfinite(r.error)]
    top = max([tol, *errors]) * 1.2
    axes.set_ylim(-top, top)
    axes.set_xlim(x0, x1)
    if not readings:
        axes.text(0.5, 0.75, "no readings recorded", transform=axes.transAxes, ha="center")
    name = "depth" if record.kind == "depth" else "stroke rate"
    axes.set_xlabel(f"set {name} ({unit})", fontsize=10)
    axes.set_ylabel(
        f"error = measured − set ({err_unit})"
        if record.kind == "depth"
        else "error (% of set rate)",
        fontsize=10,
    )
    _legend(axes)
    return _png(figure, f"{record.pen_serial} {record.kind} calibration: error vs set")


def calibration_plots(record: CalibrationRecord, *, dpi: int = DPI) -> dict[str, bytes]:
    """Both pictures as PNG bytes, by :data:`PLOT_NAMES`."""
    return {
        "measured": measured_vs_set_png(record, dpi=dpi),
        "error": error_vs_set_png(record, dpi=dpi),
    }


def write_plots(
    record: CalibrationRecord, directory: str | Path, stem: str, *, dpi: int = DPI
) -> dict[str, Path]:
    """Write both pictures as ``<stem>-<name>.png`` in ``directory``."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name, png in calibration_plots(record, dpi=dpi).items():
        path = out / f"{stem}-{name}.png"
        path.write_bytes(png)
        paths[name] = path
    return paths


__all__ = [
    "PLOT_NAMES",
    "PlotUnavailable",
    "calibration_plots",
    "error_vs_set_png",
    "measured_vs_set_png",
    "write_plots",
]
