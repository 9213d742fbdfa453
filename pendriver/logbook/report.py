"""A session's printable report: one self-contained HTML file (inline CSS and SVG, no scripts,
fonts or images to fetch), so it can be mailed, archived or printed years later exactly as it
was, and a clinic's browser never reaches out to the network to show a client's record.

Rendered with Jinja2 from ``templates/session.html.j2`` with autoescaping on: every text in it
(names, reasons, notes) comes from people, and a name like ``<script>`` must print as text.
The density heatmaps are drawn here as SVG rectangles (no plotting library): each zone's
cumulative map over the session's passes (:func:`~.densitymap.sum_maps`), coloured on one
scale in punctures/cm², its densest cell marked and cells over the zone's limit outlined.
The chain head printed at the bottom is the anchor (docs/LOGBOOK.md): keep the paper, and a
later ``verify`` against that head shows whether anything in the report was changed since.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from .chain import VerifyResult
from .densitymap import DensityMap, sum_maps
from .export import CorrectionNote, Selection, density_figures, gather
from .records import Pass, ZoneProfile
from .store import Entry, Logbook, table_version_number
from .zones import zone_key

MAX_CELLS = 6400
"""More cells than this are drawn in blocks (their mean), to keep the file small to print."""
MAP_WIDTH_PX = 360
MAP_HEIGHT_PX = 300

_RAMP = ("#440154", "#3b528b", "#21918c", "#5ec962", "#fde725")
"""Viridis's five stops: perceptually even, readable in grey print and by most colour-blind
readers."""
EMPTY_FILL = "#f2f2f2"
LIMIT_STROKE = "#d7191c"


def colour(t: float) -> str:
    """The ramp's colour at ``t`` in [0, 1] (linear between stops)."""
    t = min(1.0, max(0.0, t))
    pos = t * (len(_RAMP) - 1)
    i = min(int(pos), len(_RAMP) - 2)
    frac = pos - i
    a, b = _RAMP[i], _RAMP[i + 1]
    rgb = [
        round(int(a[k : k + 2], 16) + (int(b[k : k + 2], 16) - int(a[k : k + 2], 16)) * frac)
        for k in (1, 3, 5)
    ]
    return "#" + "".join(f"{v:02x}" for v in rgb)


@dataclass(frozen=True, slots=True)
class Cell:
    x: float
    y: float
    w: float
    h: float
    fill: str
    over: bool
    title: str


@dataclass(frozen=True, slots=True)
class Tick:
    x: float
    label: str


@dataclass(frozen=True, slots=True)
class Heatmap:
    """What the template draws for one map: cells in SVG pixels, the legend, the marks."""

    key: str
    """Unique in the document (gradient ids)."""
    width: float
    height: float
    cells: list[Cell]
    vmax: float
    peak_per_cm2: float
    peak_x: float
    peak_y: float
    peak_r: float
    limit_per_cm2: float
    limit_x: float | None
    """Where the zone's limit falls on the legend (None: beyond its end, off the scale)."""
    ticks: list[Tick]
    extent: str
    block: int
    caption: str
    stops: Sequence[tuple[float, str]] = field(default_factory=tuple)


def heatmap(key: str, dmap: DensityMap, limit_per_cm2: float, caption: str) -> Heatmap | None:
    """The SVG drawing of ``dmap`` (None when it holds no punctures: nothing to draw)."""
    rows, cols = dmap.shape
    grid = dmap.rows()
    if not rows or not cols or not any(any(r) for r in grid):
        return None
    block = max(1, math.ceil(math.sqrt(rows * cols / MAX_CELLS)))
    brows, bcols = math.ceil(rows / block), math.ceil(cols / block)
    area = dmap.cell_area_cm2
    dens = [[0.0] * bcols for _ in range(brows)]
    for iy in range(brows):
        for ix in range(bcols):
            vals = [
                grid[y][x]
                for y in range(iy * block, min(rows, (iy + 1) * block))
                for x in range(ix * block, min(cols, (ix + 1) * block))
            ]
            dens[iy][ix] = sum(vals) / (len(vals) * area)
    peak_count = max(max(r) for r in grid)
    peak = peak_count / area
    # mark the densest cell; of a plateau of equal cells, the one nearest its middle
    tops = [(y, x) for y in range(rows) for x in range(cols) if grid[y][x] == peak_count]
    my, mx = sum(t[0] for t in tops) / len(tops), sum(t[1] for t in tops) / len(tops)
    py, px = min(tops, key=lambda t: ((t[0] - my) ** 2 + (t[1] - mx) ** 2, t))
    size = max(2.0, min(28.0, MAP_WIDTH_PX / bcols, MAP_HEIGHT_PX / brows))
    width, height = bcols * size, brows * size
    vmax = max(dens[iy][ix] for iy in range(brows) for ix in range(bcols))
    cells: list[Cell] = []
    for iy in range(brows):
        for ix in range(bcols):
            d = dens[iy][ix]
            if d <= 0:
                continue
            # row 0 is the lower edge (origin lower-left); SVG's y grows downwards
            cells.append(
                Cell(
                    ix * size,
                    (brows - 1 - iy) * size,
                    size,
                    size,
                    colour(d / vmax),
                    d > limit_per_cm2,
                    f"{d:.0f} punctures/cm²",
                )
            )
    bpx, bpy = px // block, py // block
    x0_mm, y0_mm = dmap.origin_um[0] / 1000, dmap.origin_um[1] / 1000
    side_mm = dmap.cell_um / 1000
    extent = (
        f"x {x0_mm:g}–{x0_mm + cols * side_mm:g} mm, y {y0_mm:g}–{y0_mm + rows * side_mm:g} mm, "
        f"cell {side_mm:g} mm"
        + (f" (drawn in blocks of {block}×{block} cells, their mean)" if block > 1 else "")
    )
    ticks = [Tick(width * f, f"{vmax * f:.0f}") for f in (0.0, 0.25, 0.5, 0.75, 1.0)]
    return Heatmap(
        key=key,
        width=width,
        height=height,
        cells=cells,
        vmax=vmax,
        peak_per_cm2=peak,
        peak_x=(bpx + 0.5) * size,
        peak_y=(brows - 1 - bpy + 0.5) * size,
        peak_r=max(6.0, size * 1.3),
        limit_per_cm2=limit_per_cm2,
        # (a peak of 15 in a 0.01 cm² cell is 1499.99...: the same figure as a limit of 1500)
        limit_x=min(width, width * limit_per_cm2 / vmax)
        if limit_per_cm2 <= vmax * (1 + 1e-9)
        else None,
        ticks=ticks,
        extent=extent,
        block=block,
        caption=caption,
        stops=tuple((i / (len(_RAMP) - 1), c) for i, c in enumerate(_RAMP)),
    )


# -- the report's data -------------------------------------------------------------------------


def _when(t: datetime | None) -> str:
    return "—" if t is None else t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _num(v: float | None, fmt: str) -> str:
    return "—" if v is None else format(v, fmt)


@dataclass(frozen=True, slots=True)
class PassRow:
    seq: int
    hash: str
    started: str
    ended: str
    depth_set: str
    depth_mean: str
    depth_range: str
    rate: str
    duration: str
    strokes: int
    punctures: int
    density: str
    cartridge: str
    pen: str
    calibration: str
    operator: str
    ended_how: str
    complete: bool
    stop_confirmed: bool
    overrides: list[str]
    corrected_by: list[int]
    flags: list[str]
    explain: str


@dataclass(frozen=True, slots=True)
class ZoneBlock:
    name: str
    profile: ZoneProfile | None
    passes: list[PassRow]
    heatmaps: list[Heatmap]
    peak_per_cm2: float | None
    over_limit: bool
    note: str
    strokes: int
    punctures: int
    incomplete: int


def _row(e: Entry[Pass], operator: str, calibration: str) -> PassRow:
    p, f = e.record, e.record.figures
    mean, p95, peak = density_figures(p)
    overrides = [
        f"{label} override: {text}"
        for label, text in (("depth", p.depth_override), ("density", p.density_override))
        if text
    ]
    # short badges in the status column (it must fit an A4 page), the words in the detail line
    flags: list[str] = []
    why: list[str] = []
    if not p.complete:
        flags.append("INCOMPLETE")
    if p.figures_from_checkpoint:
        flags.append("INTERRUPTED")
        why.append("the host stopped mid-pass: the figures stop at its last checkpoint")
    elif p.ended_how != "completed":
        flags.append(p.ended_how.upper())
        why.append(f"ended: {p.ended_how}")
    if not p.stop_confirmed:
        flags.append("STOP UNCONFIRMED")
        why.append("the pen did not confirm STOP")
    return PassRow(
        seq=e.seq,
        hash=e.hash,
        started=_when(p.started_at),
        ended=_when(p.ended_at),
        depth_set=f"{p.depth_setpoint_mm:.2f}",
        depth_mean=f"{f.depth_mean_mm:.2f}",
        depth_range=f"{f.depth_min_mm:.2f}–{f.depth_max_mm:.2f}",
        rate=f"{f.stroke_rate_hz:.0f}",
        duration=f"{f.duration_s:.1f}",
        strokes=f.strokes,
        punctures=f.punctures,
        density="/".join(_num(v, ".0f") for v in (mean, p95, peak)),
        cartridge=f"{p.cartridge.cartridge_id} (lot {p.cartridge.lot}, exp. "
        f"{p.cartridge.expiry.isoformat()})",
        pen=" ".join(
            x for x in (p.pen.serial, p.pen.model, p.pen.firmware and f"fw {p.pen.firmware}") if x
        ),
        calibration=calibration,
        operator=operator,
        ended_how=p.ended_how,
        complete=p.complete,
        stop_confirmed=p.stop_confirmed,
        overrides=overrides,
        corrected_by=list(e.corrections),
        flags=flags,
        explain="; ".join(why)[:1].upper() + "; ".join(why)[1:],
    )


def _calibrations(logbook: Logbook) -> Callable[[Pass], str]:
    """A pass's calibration as the report names it: the version the pen reported and, when
    the calibration that left it is filed, when it was made, by whom and its record number."""
    filed = logbook.calibrations_in_force()

    def calibrated(p: Pass) -> str:
        number = table_version_number(p.calibration_version)
        e = None if number is None else filed.get((p.pen.serial, number))
        if e is None:
            return p.calibration_version
        doc = e.record.document
        when = str(doc.get("ended_at", ""))[:10]
        who = doc.get("operator_id") or "-"
        return f"{p.calibration_version} ({e.record.quantity}, {when}, by {who}, record {e.seq})"

    return calibrated


def _zone_block(
    index: int,
    name: str,
    passes: list[Entry[Pass]],
    profile: ZoneProfile | None,
    names: Any,
    calibrated: Any,
) -> ZoneBlock:
    rows = [_row(e, names(e.record.operator_id), calibrated(e.record)) for e in passes]
    maps = [e.record.figures.density_map for e in passes if e.record.figures.density_map]
    limit = profile.max_density_per_cm2 if profile is not None else math.inf
    heatmaps: list[Heatmap] = []
    peak: float | None = None
    note = ""
    if not maps:
        note = "no density map recorded" if passes else "no passes"
    else:
        try:
            total = sum_maps([m for m in maps if m is not None])
        except ValueError:
            note = "the passes' maps are on different grids: each is drawn on its own"
            for i, (e, m) in enumerate(
                (e, e.record.figures.density_map) for e in passes if e.record.figures.density_map
            ):
                h = heatmap(f"z{index}p{i}", m, limit, f"record {e.seq}")
                if h is not None:
                    heatmaps.append(h)
            peak = sum(m.peak_per_cm2() for m in maps if m is not None)
        else:
            peak = total.peak_per_cm2()
            n = len(maps)
            h = heatmap(
                f"z{index}", total, limit, f"cumulative over {n} pass{'es' if n != 1 else ''}"
            )
            if h is None:
                note = "no punctures recorded"
            else:
                heatmaps.append(h)
    return ZoneBlock(
        name=name,
        profile=profile,
        passes=rows,
        heatmaps=heatmaps,
        peak_per_cm2=peak,
        over_limit=peak is not None and peak > limit,
        note=note,
        strokes=sum(e.record.figures.strokes for e in passes),
        punctures=sum(e.record.figures.punctures for e in passes),
        incomplete=sum(1 for e in passes if not e.record.complete),
    )


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("pendriver.logbook", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    return env


def session_report(
    logbook: Logbook, session_id: str, verification: VerifyResult | None = None
) -> str:
    """The printable HTML report of session ``session_id`` (raises :class:`~.errors.NotFound`
    for an unknown session). The chain is verified first (or ``verification`` is the caller's
    verdict); a logbook that fails is said to at the top of the page, with the first bad
    record."""
    session = logbook.session(session_id)  # NotFound, one line, for an unknown id
    g = gather(logbook, Selection(session_id=session_id), verification)
    s = session.record
    client = g.clients.get(s.client_id)
    clinic = g.clinics.get(client.clinic_id) if client is not None else None
    profiles = logbook.zone_profiles(clinic.clinic_id if clinic is not None else "")

    def name(operator_id: str) -> str:
        op = g.operators.get(operator_id)
        return f"{op.name} ({operator_id})" if op is not None and op.name else operator_id

    by_zone: dict[str, list[Entry[Pass]]] = {}
    for z in s.zones:
        by_zone.setdefault(zone_key(z), [])
    for e in g.passes:
        by_zone.setdefault(e.record.zone, []).append(e)
    calibrated = _calibrations(logbook)
    zones = [
        _zone_block(i, z, passes, profiles.get(z), name, calibrated)
        for i, (z, passes) in enumerate(by_zone.items())
    ]
    screening = g.screenings.get(s.screening_id)
    corrections: list[CorrectionNote] = sorted(
        (c for notes in g.corrections.values() for c in notes), key=lambda c: c.seq
    )
    head_seq, head_hash = g.head
    return (
        _environment()
        .get_template("session.html.j2")
        .render(
            clinic=clinic,
            client_id=s.client_id,
            session=s,
            session_seq=session.seq,
            operator=name(s.operator_id),
            screening=None if screening is None else screening.record,
            overrider=(
                name(screening.record.override_by)
                if screening is not None and screening.record.override_by
                else ""
            ),
            zones=zones,
            pass_count=len(g.passes),
            incomplete=sum(1 for e in g.passes if not e.record.complete),
            overrides=sum(
                1 for e in g.passes if e.record.depth_override or e.record.density_override
            ),
            corrections=corrections,
            head_seq=head_seq,
            head_hash=head_hash,
            verification=g.verification,
            generated=_when(datetime.now(UTC)),
            logbook_url=logbook.url,
            inf=math.inf,
        )
    )


__all__ = ["MAX_CELLS", "Heatmap", "colour", "heatmap", "session_report"]
