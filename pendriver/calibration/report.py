"""A calibration's report: one printable HTML file, its plots as PNG, and the raw points as CSV.

What a bench engineer files with the device history: who calibrated which pen against which
gauge, when and in what conditions; the verdict and what it left in force; as found and as
left, the uncertainty, the fit and the tables; every reading; and a place to sign. The HTML is
self-contained (CSS inline, the plots embedded as ``data:`` URIs, no scripts, fonts or links),
so it opens, mails and prints the same years later and a browser showing it never reaches out
to the network. It is laid out for A4: the summary on the first page, the plots on the next,
the per-set-point table and the sign-off after them, the raw readings as an appendix.

Rendered with Jinja2 (``templates/calibration.html.j2``) with autoescaping on, as the session
report is: the operator, the notes and even the pen's serial come from people or from a pen,
and ``<script>`` in any of them must print as text.

The plots need matplotlib (the ``plot`` extra). Without it :func:`write_report` and
:func:`render_html` raise :class:`~pendriver.density.picture.PlotUnavailable` rather than
quietly filing a report with no pictures; ``plots=False`` asks for the report without them on
purpose (it then says so where the plots would be, and they can be redrawn from the CSV).
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from .readings import PointSummary, flag, summarise, tolerance_in_error_units
from .readings import rows as reading_rows
from .record import DECISION_RULES, RAW_COLUMNS, CalibrationRecord

PLOT_CAPTIONS = {
    "measured": "Measured against set point, with the ideal line and the ±tolerance band.",
    "error": "Error of every reading against its set point, with the ±tolerance band; lines "
    "join the set points' means (dashed as found, solid as left).",
}

# -- formatting ---------------------------------------------------------------------------------


def _parse_time(text: str) -> datetime | None:
    try:
        t = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _when(text: str) -> str:
    """UTC, to the second, as the record stores it; text that is not a time as it is."""
    t = _parse_time(text)
    return t.strftime("%Y-%m-%d %H:%M:%S UTC") if t is not None else (text or "—")


def _duration(start: str, end: str) -> str:
    a, b = _parse_time(start), _parse_time(end)
    if a is None or b is None or b < a:
        return ""
    seconds = round((b - a).total_seconds())
    minutes, s = divmod(seconds, 60)
    hours, m = divmod(minutes, 60)
    if hours:
        return f"{hours} h {m:02d} min"
    return f"{m} min {s:02d} s" if m else f"{s} s"


def _css_string(value: str) -> Markup:
    """``value`` as a CSS string's content (the page footer's): everything but letters,
    digits and a few safe marks as a CSS hex escape, so no quote, backslash or ``</style>``
    in a serial can end the string or the style sheet."""
    return Markup(
        "".join(
            c if (c.isalnum() and c.isascii()) or c in " .-_/:" else f"\\{ord(c):06x}"
            for c in value
        )
    )


def _signed(value: float, places: int) -> str:
    """``+0.012`` / ``-0.012``, and ``+0.000`` for what rounds to zero (never ``-0.000``,
    which reads like a real negative error)."""
    if not math.isfinite(value):
        return "—"
    rounded = round(value, places)
    return f"{rounded if rounded != 0 else 0.0:+.{places}f}"


def safe_name(text: str, limit: int = 48) -> str:
    """``text`` as part of a file name on any file system: letters, digits, ``.``, ``_``
    and ``-`` only, no leading dot."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-")[:limit].rstrip("._-")
    return name or "unnamed"


def report_stem(record: CalibrationRecord) -> str:
    """The files' common name: ``<serial>-<kind>-<id prefix>``, stable for one record (it
    can be rewritten and lands on the same files) and distinct between calibrations."""
    return f"{safe_name(record.pen_serial)}-{record.kind}-{safe_name(record.calibration_id, 8)}"


@dataclass(frozen=True, slots=True)
class Figure:
    label: str
    value: str
    note: str = ""
    status: str = ""
    """``ok`` (within tolerance), ``over`` (beyond), ``none`` (not verified) or empty."""


@dataclass(frozen=True, slots=True)
class Fact:
    label: str
    value: str


@dataclass(frozen=True, slots=True)
class TableView:
    title: str
    version: str
    points: list[tuple[str, str, str]]
    """(depth mm, actuator mm, correction µm)."""
    rate: str
    note: str


@dataclass(frozen=True, slots=True)
class Summary:
    """One row of the per-set-point table, formatted."""

    phase: str
    cells: list[str]
    within: bool


@dataclass(frozen=True, slots=True)
class Reading:
    phase: str
    cells: list[str]
    rejected: bool


class _Units:
    """How this kind's figures print: depth in mm, rate in % of the set rate."""

    def __init__(self, record: CalibrationRecord) -> None:
        self.depth = record.kind == "depth"
        self.unit = "mm" if self.depth else "%"
        self.quantity = "mm" if self.depth else "Hz"

    def error(self, value: float, places: int = 3) -> str:
        """An error stored in mm (depth) or as a fraction of the rate (rate)."""
        if not math.isfinite(value):
            return "—"
        if self.depth:
            return f"{value:.{places}f} mm"
        return f"{100 * value:.{max(places - 1, 2)}f} %"


def _figures(record: CalibrationRecord) -> list[Figure]:
    u = _Units(record)
    tol = record.tolerance

    def against(value: float) -> tuple[str, str]:
        if not math.isfinite(value):
            return "", ""
        if value <= tol * (1 + 1e-9):
            return "within tolerance", "ok"
        return "beyond tolerance", "over"

    found_note, found_status = against(record.as_found_max_error)
    figures = [
        Figure("Tolerance", "±" + u.error(tol), "of the set rate" if not u.depth else ""),
        Figure(
            "As found, largest error",
            u.error(abs(record.as_found_max_error)),
            found_note,
            found_status,
        ),
    ]
    if record.as_left_max_error is None:
        figures.append(
            Figure("As left, largest error", "not verified", "nothing was written", "none")
        )
    else:
        note, status = against(record.as_left_max_error)
        figures.append(
            Figure("As left, largest error", u.error(abs(record.as_left_max_error)), note, status)
        )
    # the rule wants the measurement able to show the tolerance at all (why_not_verified)
    fine = record.uncertainty <= tol * (1 + 1e-9)
    figures += [
        Figure(
            "Expanded uncertainty",
            "±" + u.error(record.uncertainty),
            "k = 2 (about 95 %), of one setting" + ("" if fine else ": larger than the tolerance"),
            "" if fine else "over",
        ),
        Figure(
            "Repeatability",
            u.error(record.repeatability, 4),
            "pooled standard deviation of single readings",
        ),
    ]
    if u.depth:
        figures.append(
            Figure(
                "Hysteresis",
                u.error(record.hysteresis),
                "largest difference of the up and down approaches",
            )
        )
    else:
        figures.append(Figure("Hysteresis", "not applicable", "a rate has no approach side"))
    return figures


def _guard_note(record: CalibrationRecord) -> str:
    """Said when a pass sits so near the limit that the uncertainty reaches past it."""
    left = record.as_left_max_error
    if record.verdict != "pass" or left is None:
        return ""
    reach = abs(left) + record.uncertainty
    if reach <= record.tolerance:
        return ""
    u = _Units(record)
    return (
        f"The as-left error plus the uncertainty ({u.error(reach)}) reaches beyond the "
        f"tolerance: a pass by simple acceptance, close to the limit."
    )


def _verdict_text(record: CalibrationRecord) -> str:
    after = _version(record.table_version_after)
    if record.verdict == "pass":
        return f"Verified within tolerance: table {after} committed and in force."
    if record.verdict == "fail":
        return (
            f"Out of tolerance after correction: the trial table was discarded; {after} "
            "(the previous calibration) remains in force."
        )
    return f"The pen could not be corrected: nothing was written; {after} remains in force."


def _version(v: int) -> str:
    return f"version {v}" + (" (never calibrated)" if v == 0 else "")


def _table(
    title: str, version: int, points: Sequence[Sequence[int]], rate: Sequence[int], note: str
) -> TableView:
    pts = []
    for p in points:
        if len(p) >= 2:
            d, a = int(p[0]), int(p[1])
            pts.append((f"{d / 1000:.3f}", f"{a / 1000:.3f}", f"{a - d:+d}"))
    ppm, mhz = [*rate, 0, 0][:2]
    return TableView(
        title,
        _version(version),
        pts,
        f"{int(ppm):+d} ppm, {int(mhz) / 1000:+.3f} Hz",
        note,
    )


def _tables(record: CalibrationRecord) -> list[TableView]:
    same = record.table_version_after == record.table_version_before
    return [
        _table(
            "Before",
            record.table_version_before,
            record.table_before,
            record.rate_before,
            "in force when the calibration began",
        ),
        _table(
            "After",
            record.table_version_after,
            record.table_after,
            record.rate_after,
            "unchanged: the table above is still in force"
            if same
            else ("committed" if record.passed else "in force after the calibration"),
        ),
    ]


_FIT_LABELS: dict[str, tuple[str, str]] = {
    # key: (label, format: "kind", "gain", "mm", "mm4", "hz", "ppm", "mhz")
    "kind": ("Model", "kind"),
    "gain": ("Gain", "gain"),
    "offset_mm": ("Offset", "mm"),
    "offset_hz": ("Offset", "hz"),
    "rate_ppm": ("Correction: rate", "ppm"),
    "rate_offset_mhz": ("Correction: offset", "mhz"),
    "residual_sd_mm": ("Residual standard deviation", "mm4"),
    "max_residual_mm": ("Largest residual", "mm4"),
}
_HIDDEN_FIT_KEYS = {"knots_mm", "finite", "rule"}
"""Shown apart from the coefficients (the knots as a table, the rule as a sentence)."""


def _fit_value(kind: str, value: Any) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        if kind == "kind":
            what = {
                "linear": "straight line",
                "piecewise": "piecewise-linear through the knots",
                "gain": "gain only (one set rate)",
            }
            return f"{value}: {what.get(str(value), '')}".rstrip(": ")
        return str(value)
    v = float(value)
    if kind == "gain":
        return f"{v:.6f}"
    if kind == "mm":
        return f"{v:+.4f} mm"
    if kind == "mm4":
        return f"{v:.4f} mm"
    if kind == "hz":
        return f"{v:+.3f} Hz"
    if kind == "ppm":
        return f"{v:+.0f} ppm"
    if kind == "mhz":
        return f"{v / 1000:+.3f} Hz ({v:+.0f} mHz)"
    return f"{v:g}"


@dataclass(frozen=True, slots=True)
class FitView:
    facts: list[Fact]
    equation: str
    """The depth model as an equation (empty for rate: its fit is stated by its facts)."""
    knots: list[tuple[str, str]]
    rule: str
    finite: bool


def _fit(record: CalibrationRecord) -> FitView:
    fit = record.fit or {}
    facts = []
    for key, value in fit.items():
        if key in _HIDDEN_FIT_KEYS:
            continue
        label, kind = _FIT_LABELS.get(key, (key.replace("_", " ").capitalize(), "other"))
        facts.append(Fact(label, _fit_value(kind, value)))
    equation = ""
    gain = fit.get("gain")
    for key, lhs, rhs, unit, places in (
        ("offset_mm", "measured depth", "actuator position", "mm", 4),
        ("offset_hz", "counted stroke rate", "drive", "Hz", 3),
    ):
        offset = fit.get(key)
        if isinstance(gain, int | float) and isinstance(offset, int | float):
            sign = "+" if offset >= 0 else "−"
            equation = f"{lhs} = {gain:.6f} × {rhs} {sign} {abs(offset):.{places}f} {unit}"
    knots = [
        (f"{float(k[0]):.3f}", f"{float(k[1]):.3f}")
        for k in fit.get("knots_mm") or []
        if isinstance(k, list | tuple) and len(k) >= 2
    ]
    return FitView(facts, equation, knots, str(fit.get("rule", "")), bool(fit.get("finite", True)))


def _summary_rows(record: CalibrationRecord, points: Sequence[PointSummary]) -> list[Summary]:
    out = []
    for p in points:
        within = "yes" if p.within else "NO"
        if record.kind == "depth":

            def mm(v: float | None) -> str:
                return "—" if v is None else f"{v:.3f}"

            cells = [
                f"{p.setpoint:.3f}",
                mm(p.up_mean),
                mm(p.down_mean),
                mm(p.mean),
                _signed(p.error, 3),
                _signed(p.hysteresis, 3)
                if p.up_mean is not None and p.down_mean is not None
                else "—",
                f"{p.spread:.3f}",
                f"{p.kept}" + (f" + {p.rejected} rej." if p.rejected else ""),
                within,
            ]
        else:
            cells = [
                f"{p.setpoint:.2f}",
                f"{p.mean:.3f}",
                _signed(p.error, 3),
                f"{p.spread:.3f}",
                f"{p.kept}" + (f" + {p.rejected} rej." if p.rejected else ""),
                within,
            ]
        out.append(Summary(p.phase, cells, p.within))
    return out


_RAW_HEADINGS = {
    "phase": "Phase",
    "setpoint_mm": "Set mm",
    "direction": "Approach",
    "repeat": "Repeat",
    "actuator_mm": "Actuator mm",
    "measured_mm": "Measured mm",
    "error_mm": "Error mm",
    "rejected": "Rejected",
    "reason": "Reason",
    "setpoint_hz": "Set Hz",
    "window_s": "Window s",
    "strokes": "Strokes",
    "measured_hz": "Measured Hz",
    "error_pct": "Error %",
}
_TEXT_COLUMNS = {"phase", "direction", "rejected", "reason"}
"""Raw columns printed left-aligned (the rest are numbers, right-aligned)."""
_RAW_FORMATS = {
    # column: (decimal places, signed)
    "setpoint_mm": (3, False),
    "actuator_mm": (4, False),
    "measured_mm": (4, False),
    "error_mm": (4, True),
    "setpoint_hz": (2, False),
    "window_s": (2, False),
    "measured_hz": (3, False),
    "error_pct": (3, True),
}


def _raw_cell(column: str, value: Any) -> str:
    if column == "rejected":
        return "REJECTED" if flag(value) else ""
    fmt = _RAW_FORMATS.get(column)
    if fmt is not None:
        places, signed = fmt
        try:
            number = float(value)
        except (TypeError, ValueError):
            return str(value)
        return _signed(number, places) if signed else f"{number:.{places}f}"
    return "" if value is None else str(value)


def _raw(record: CalibrationRecord) -> tuple[list[tuple[str, bool]], list[Reading]]:
    """(the headings, each with whether its column is numeric; the rows)."""
    columns = RAW_COLUMNS[record.kind]
    out = [
        Reading(
            str(r.get("phase", "")),
            [_raw_cell(c, r.get(c, "")) for c in columns],
            flag(r.get("rejected", False)),
        )
        for r in record.raw
    ]
    return [(_RAW_HEADINGS.get(c, c), c not in _TEXT_COLUMNS) for c in columns], out


def _resolution(record: CalibrationRecord) -> str:
    """The reference's resolution: the gauge's for depth; for rate one stroke in the shortest
    window (the pen's counter is the reference, so the window length sets it)."""
    if record.kind == "rate":
        windows = [w for w in (_float(r.get("window_s")) for r in record.raw) if w > 0]
        if windows:
            w = min(windows)
            return f"one stroke per window: {1 / w:.3g} Hz over {w:g} s"
    if record.gauge_resolution_mm > 0:
        return f"{record.gauge_resolution_mm:g} mm"
    return "—"


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("pendriver.calibration", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["css_string"] = _css_string
    return env


def render_html(
    record: CalibrationRecord,
    plots: Mapping[str, bytes] | bool = True,
    *,
    generated: datetime | None = None,
) -> str:
    """The report as one HTML document. ``plots``: ``True`` draws them (raises
    :class:`~pendriver.density.picture.PlotUnavailable` without matplotlib), ``False`` leaves
    them out (the report says so), or the PNGs already drawn, by
    :data:`~.plots.PLOT_NAMES` (as :func:`write_report` passes them, drawing them once)."""
    if plots is True:
        from .plots import calibration_plots

        pictures: Mapping[str, bytes] = calibration_plots(record)
    elif plots is False:
        pictures = {}
    else:
        pictures = plots
    u = _Units(record)
    readings = reading_rows(record)
    points = summarise(record, readings)
    headings, raw = _raw(record)
    kind_title = "Depth" if u.depth else "Stroke-rate"
    tol = tolerance_in_error_units(record)
    tol_text = f"±{tol:.3f} mm" if u.depth else f"±{tol:.2f} %"
    if u.depth:
        summary_headings = [
            ("Set", "mm"),
            ("Up mean", "mm"),
            ("Down mean", "mm"),
            ("Mean", "mm"),
            ("Error", "mm"),
            ("Hysteresis", "mm"),
            ("Spread", "mm"),
            ("Readings", "kept"),
            ("Within", tol_text),
        ]
    else:
        summary_headings = [
            ("Set", "Hz"),
            ("Mean", "Hz"),
            ("Error", "%"),
            ("Spread", "Hz"),
            ("Windows", "kept"),
            ("Within", tol_text),
        ]
    return (
        _environment()
        .get_template("calibration.html.j2")
        .render(
            r=record,
            kind_title=kind_title,
            started=_when(record.started_at),
            ended=_when(record.ended_at),
            duration=_duration(record.started_at, record.ended_at),
            resolution=_resolution(record),
            verdict_text=_verdict_text(record),
            guard_note=_guard_note(record),
            decision_rule=DECISION_RULES[record.kind],
            figures=_figures(record),
            fit=_fit(record),
            tables=_tables(record),
            plots=[
                (name, _data_uri(png), PLOT_CAPTIONS.get(name, ""))
                for name, png in pictures.items()
            ],
            summary_headings=summary_headings,
            summary=_summary_rows(record, points),
            rejected=[x for x in readings if x.rejected],
            quantity_unit=u.quantity,
            error_unit=u.unit,
            raw_headings=headings,
            raw=raw,
            generated=(generated or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC"),
            stem=report_stem(record),
        )
    )


@dataclass(frozen=True, slots=True)
class ReportFiles:
    """What :func:`write_report` wrote."""

    html: Path
    csv: Path
    pngs: tuple[Path, ...]
    """In :data:`~.plots.PLOT_NAMES` order; empty when written with ``plots=False``."""

    def all(self) -> tuple[Path, ...]:
        return (self.html, *self.pngs, self.csv)


def write_report(
    record: CalibrationRecord, directory: str | Path, *, plots: bool = True
) -> ReportFiles:
    """Write ``<stem>.html``, ``<stem>-<plot>.png`` and ``<stem>-raw.csv`` in ``directory``
    (created if missing; :func:`report_stem` names them). The plots are drawn before anything
    is written, so a missing matplotlib leaves no half-written report behind."""
    pictures: dict[str, bytes] = {}
    if plots:
        from .plots import calibration_plots

        pictures = calibration_plots(record)
    html = render_html(record, pictures if plots else False)
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    stem = report_stem(record)
    pngs = []
    for name, png in pictures.items():
        path = out / f"{stem}-{name}.png"
        path.write_bytes(png)
        pngs.append(path)
    csv_path = out / f"{stem}-raw.csv"
    csv_path.write_text(record.raw_csv(), encoding="utf-8", newline="")
    html_path = out / f"{stem}.html"
    html_path.write_text(html, encoding="utf-8")
    return ReportFiles(html_path, csv_path, tuple(pngs))


__all__ = [
    "ReportFiles",
    "render_html",
    "report_stem",
    "safe_name",
    "write_report",
]
