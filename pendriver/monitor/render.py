"""The monitor's picture of a :class:`MonitorView`: a rich panel for a terminal, plain lines
for a log.

:func:`render` is a pure function of the view: no clock, no terminal, no pen. It returns a
rich renderable; rich turns it into escape codes for a terminal, or into plain text when the
console has no colour (a pipe, ``NO_COLOR``), so a test prints it to
``Console(record=True, width=...)`` and reads the text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.console import Group
from rich.text import Text

from firmware_protocol.messages import PenState

from ..naming import fault_names
from .view import MonitorView, state_name

EVENT_LINES = 5
"""Events shown in the panel (the latest ones)."""
STALE_AFTER_S = 1.0
"""Values older than this (no frame from the pen since) are shown dimmed."""
LABEL = 9
"""Width of the label column ("depth", "rate", ...)."""

_TONES = {"good": "green", "bad": "bold red", "info": ""}
_STATE_STYLE = {
    PenState.RUNNING: "bold green",
    PenState.FAULT: "bold red",
    PenState.IDLE: "bold cyan",
    PenState.BOOTING: "bold yellow",
    PenState.CALIBRATING: "bold yellow",
}

Segment = tuple[str, str]
"""Text and its rich style (``""``: plain)."""


@dataclass(frozen=True, slots=True)
class _Glyphs:
    full: str
    half: str
    empty: str
    mark: str


_UNICODE = _Glyphs("━", "╸", "─", "┃")
_ASCII = _Glyphs("#", "#", "-", "|")
UNICODE_SAMPLE = _UNICODE.full + _UNICODE.mark + "–→…"
"""Characters the panel may draw: an output that cannot encode them gets the ASCII panel."""


def render(
    view: MonitorView, width: int = 80, color: bool = True, *, ascii_only: bool = False
) -> Group:
    """The panel for ``view``: one :class:`rich.text.Text` a line, each at most ``width`` wide.

    Without ``color`` the lines carry no style at all (the same text a colourless console
    prints). ``ascii_only`` draws bars with ``#`` and ``-`` for outputs that cannot encode
    box-drawing characters.
    """
    rows = panel_rows(view, width, ascii_only=ascii_only)
    return Group(*(_fit(row, width, color, ascii_only) for row in rows))


def panel_rows(view: MonitorView, width: int, *, ascii_only: bool = False) -> list[list[Segment]]:
    """The panel as rows of styled segments, before fitting to the width."""
    width = max(20, width)
    glyphs = _ASCII if ascii_only else _UNICODE
    info, st, s, q = view.info, view.status, view.sample, view.link
    stale = q is not None and (
        q.state != "up" or (q.last_frame_age_s is not None and q.last_frame_age_s > STALE_AFTER_S)
    )
    value_style = "dim" if stale else ""
    lines: list[list[Segment]] = []

    # Title: what pen, where; on the right how long it has been up and how long we watched.
    if info is not None:
        left = f" {info.model}  {info.serial_number}  fw {info.firmware_version}  {view.url}"
    else:
        left = f" connecting to {view.url}"
    uptime = s.time_s if s is not None else (st.uptime_s if st is not None else None)
    right = (f"pen up {_clock(uptime)}   " if uptime is not None else "") + (
        f"watching {view.elapsed_s:.0f} s "
    )
    if len(left) + 1 + len(right) > width:  # narrow: the pen's name matters more
        right = f"{view.elapsed_s:.0f} s " if len(left) + 6 <= width else ""
    gap = max(1, width - len(left) - len(right))
    lines.append([(left + " " * gap + right, "bold reverse")])

    # State, faults, cartridge.
    state_text = state_name(view.state)
    state_style = (
        _STATE_STYLE.get(view.state, "bold yellow") if view.state is not None else "bold yellow"
    )
    row: list[Segment] = [_label("state"), (state_text, state_style)]
    note = " (last known)" if stale else ""
    row.append((note + " " * max(0, 12 - len(state_text) - len(note)) + "  ", "dim"))
    row.append(("faults ", "dim"))
    row.append((fault_names(view.faults), "bold red" if view.faults else ""))
    if st is not None:
        row += [("   cartridge ", "dim"), (st.cartridge.name.lower().replace("_", " "), "")]
    lines.append(row)

    # Depth and rate, each with a bar against the pen's range and a marker at the set point.
    bar_w = max(8, min(30, width - LABEL - 10 - 28))
    depth_set = s.depth_setpoint_mm if s is not None else (st.depth_setpoint_mm if st else None)
    depth_max = info.depth_max_mm if info is not None else None
    row = [_label("depth")]
    if s is not None and depth_max:
        row.append((f"{s.depth_measured_mm:5.2f} mm ", value_style or "bold"))
        row += _bar(
            s.depth_measured_mm / depth_max, bar_w, "cyan", glyphs, _ratio(depth_set, depth_max)
        )
    else:
        row.append(("  -   mm ", "dim"))
    if depth_set is not None:
        row.append((f"  set {depth_set:.2f} mm", ""))
    if info is not None:
        row.append((f"   {info.depth_min_mm:g}–{info.depth_max_mm:g} mm", "dim"))
    lines.append(row)

    rate_set = st.rate_setpoint_hz if st is not None else None
    rate_max = info.rate_max_hz if info is not None else None
    row = [_label("rate")]
    if s is not None and rate_max:
        row.append((f"{s.stroke_rate_hz:5.1f} Hz ", value_style or "bold"))
        row += _bar(
            s.stroke_rate_hz / rate_max, bar_w, "magenta", glyphs, _ratio(rate_set, rate_max)
        )
    else:
        row.append(("  -   Hz ", "dim"))
    if rate_set is not None:
        row.append((f"  set {rate_set:g} Hz", ""))
    if info is not None:
        span = (
            f"{info.rate_min_hz:g} Hz fixed"
            if info.fixed_rate
            else f"{info.rate_min_hz:g}–{info.rate_max_hz:g} Hz"
        )
        row.append((f"   {span}", "dim"))
    lines.append(row)

    # Strokes and motor current.
    strokes = s.stroke_count if s is not None else (st.stroke_count if st is not None else None)
    row = [_label("strokes")]
    row.append((f"{strokes:,}" if strokes is not None else "-", value_style or "bold"))
    if view.strokes_per_s is not None:
        row.append((f"   {view.strokes_per_s:.1f}/s", value_style))
    if s is not None:
        row += [("   motor ", "dim"), (f"{s.motor_current_ma} mA", value_style)]
    lines.append(row)

    # Battery: volts, and a bar with the percentage when the pen reports one.
    volts = s.battery_v if s is not None else (st.battery_v if st is not None else None)
    row = [_label("battery")]
    if volts is None:
        row.append(("-", "dim"))
    elif volts == 0:
        row.append(("mains powered", ""))
    else:
        row.append((f"{volts:.2f} V ", value_style or "bold"))
        if st is not None and st.battery_v:
            pct = max(0, min(100, st.battery_percent))
            tone = "green" if pct > 40 else ("yellow" if pct > 15 else "bold red")
            row += _bar(pct / 100, min(bar_w, 20), tone, glyphs)
            row.append((f" {pct} %", tone))
    lines.append(row)

    # Link quality.
    row = [_label("link")]
    if q is None:
        row.append(("-", "dim"))
        lines.append(row)
    else:
        tone = {"up": "bold green", "down": "bold red"}.get(q.state, "bold yellow")
        row.append((str(q.state).upper(), tone))
        if q.last_frame_age_s is not None:
            age_tone = "bold red" if q.last_frame_age_s > STALE_AFTER_S else ""
            row += [("   last frame ", "dim"), (f"{q.last_frame_age_s:.2f} s", age_tone)]
            row.append((" ago", "dim"))
        if q.rtt_ms_p50 is not None:
            p99 = f"{q.rtt_ms_p99:.1f}" if q.rtt_ms_p99 is not None else "-"
            row += [("   rtt ", "dim"), (f"{q.rtt_ms_p50:.1f} / {p99} ms", ""), (" p50/p99", "dim")]
        lines.append(row)
        counts: list[Segment] = [(" " * LABEL, "")]
        for n, what, bad in (
            (q.frames_ok, "frames ok", False),
            (q.frames_dropped, "dropped", True),
            (q.frames_lost, "lost", True),
            (q.retries, "retries", True),
            (q.reconnects, "reconnects", True),
        ):
            counts += [(f"{n:,}", "yellow" if bad and n else ""), (f" {what}  ", "dim")]
        lines.append(counts)

    # The latest events, oldest first.
    shown = list(view.events)[-EVENT_LINES:]
    if not shown:
        lines.append([_label("events"), ("none yet", "dim")])
    for i, ev in enumerate(shown):
        label = _label("events") if i == 0 else (" " * LABEL, "")
        lines.append([label, (f"{ev.at_s:6.1f} s  ", "dim"), (ev.text, _TONES.get(ev.tone, ""))])
    return lines


def plain_line(view: MonitorView) -> str:
    """One line for a log: the same numbers as the panel, no colour, no bars."""
    s, st, q = view.sample, view.status, view.link
    parts = [f"{view.elapsed_s:6.1f} s", state_name(view.state) if view.state is not None else "?"]
    if s is not None:
        parts.append(f"depth {s.depth_measured_mm:.2f}/{s.depth_setpoint_mm:.2f} mm")
        parts.append(f"rate {s.stroke_rate_hz:.1f} Hz")
        sps = f" ({view.strokes_per_s:.1f}/s)" if view.strokes_per_s is not None else ""
        parts.append(f"strokes {s.stroke_count}{sps}")
        parts.append(f"motor {s.motor_current_ma} mA")
        battery = f"{s.battery_v:.2f} V" if s.battery_v else "mains"
        if st is not None and st.battery_v:
            battery += f" {st.battery_percent} %"
        parts.append(f"battery {battery}")
    elif st is not None:
        parts.append(f"depth set {st.depth_setpoint_mm:.2f} mm")
        parts.append(f"strokes {st.stroke_count}")
    parts.append(f"faults {fault_names(view.faults)}")
    if q is not None:
        parts.append(
            f"link {q.state} ok={q.frames_ok} dropped={q.frames_dropped} lost={q.frames_lost}"
        )
    return "  ".join(parts)


def header_line(view: MonitorView) -> str:
    """What pen the plain lines are about (printed once, first)."""
    if view.info is None:
        return f"monitoring {view.url}"
    i = view.info
    return f"monitoring {i.model} {i.serial_number} (firmware {i.firmware_version}) at {view.url}"


_TO_ASCII = str.maketrans({"–": "-", "→": ">", "…": "~", "·": "-"})


def to_ascii(text: str) -> str:
    """``text`` for an output that cannot encode more than ASCII (same length)."""
    return text.translate(_TO_ASCII).encode("ascii", "replace").decode("ascii")


def _fit(row: Sequence[Segment], width: int, color: bool, ascii_only: bool) -> Text:
    """One line of at most ``width`` cells, cut with an ellipsis; styled if ``color``."""
    line = Text(no_wrap=True, overflow="ellipsis")
    for text, style in row:
        line.append(to_ascii(text) if ascii_only else text, style if color else "")
    line.rstrip()
    if line.cell_len > width:
        line.truncate(width - 1)
        line.append("~" if ascii_only else "…")
    return line


def _bar(
    fraction: float,
    width: int,
    style: str,
    g: _Glyphs,
    mark: float | None = None,
) -> list[Segment]:
    """A bar ``width`` cells long filled to ``fraction``, with an optional marker."""
    fraction = max(0.0, min(1.0, fraction))
    cells = fraction * width
    full = int(cells)
    half = full < width and cells - full >= 0.5
    chars = [g.full] * full + ([g.half] if half else [])
    filled = len(chars)
    chars += [g.empty] * (width - filled)
    mark_at = None if mark is None else min(width - 1, max(0, round(max(0.0, mark) * width) - 1))
    segments: list[Segment] = []
    for i, ch in enumerate(chars):
        seg: Segment = (
            (g.mark, "bold") if i == mark_at else (ch, style if i < filled else "bright_black")
        )
        if segments and segments[-1][1] == seg[1]:
            segments[-1] = (segments[-1][0] + seg[0], seg[1])
        else:
            segments.append(seg)
    return segments


def _ratio(value: float | None, full: float) -> float | None:
    return None if value is None or not full else value / full


def _label(text: str) -> Segment:
    return (f"{text:<{LABEL}}", "dim")


def _clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"
