"""``pen monitor``: a live, read-only view of one pen: telemetry, faults, events and the link.

Two halves, kept apart so that the picture can be tested without a terminal or a clock:

* :func:`render` is pure: a :class:`MonitorView` (what is known about the pen now), a width and
  a colour flag in, lines of text out. :func:`plain_line` is the one-line form for logs.
* :func:`run_monitor` is the loop: it feeds a view from the driver's callbacks and a status
  poll, and draws it, in place about ten times a second on a terminal (cursor hidden while it
  runs and shown again however it ends), or as one plain line a second when the output is a
  file or a pipe.

The monitor never starts or stops the motor: watching a pen must not change what it does. It
only asks for STATUS (once a second, for the set points and the battery percentage that
telemetry does not carry) and keeps the link alive; :func:`monitor` connects with
``reconnect=True`` so that a pulled cable shows as LINK DOWN and then LINK UP instead of ending
the view.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from firmware_protocol.messages import CartridgeState, FaultFlags, PenState

from .config import DriverConfig
from .driver import Pen, connect
from .errors import PenError
from .events import CartridgeChanged, LinkDown, LinkUp, PenEvent, QueueOverflow, StateChanged
from .models import DeviceInfo, FaultEvent, LinkQuality, Status, TelemetrySample

TTY_REFRESH_S = 0.1
"""Redraw period on a terminal: smooth to the eye, cheap to draw."""
LINE_PERIOD_S = 1.0
"""One plain line a second when the output is not a terminal."""
STATUS_INTERVAL_S = 1.0
"""How often STATUS is asked for (set points, battery percentage, cartridge)."""
EVENT_LINES = 5
"""Events shown in the panel (the latest ones)."""
MAX_WIDTH = 100
"""The panel stops growing beyond this many columns: longer bars are no easier to read."""
STROKE_WINDOW_S = 1.0
"""Pen time over which strokes per second are counted."""
STALE_AFTER_S = 1.0
"""Values older than this (no frame from the pen since) are shown dimmed."""

MONITOR_CONFIG = DriverConfig(reconnect=True)
"""A monitor outlives a pulled cable: it reconnects by itself (never restarting the motor)."""

# ---------------------------------------------------------------------- the view


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    """An event as the panel lists it: when (seconds since the monitor started) and what."""

    at_s: float
    text: str
    tone: str = "info"
    """``info``, ``good`` or ``bad``: the colour it gets on a terminal."""


@dataclass(slots=True)
class MonitorView:
    """Everything the panel shows, kept up to date by the loop (or built by hand in tests)."""

    url: str = ""
    info: DeviceInfo | None = None
    status: Status | None = None
    sample: TelemetrySample | None = None
    link: LinkQuality | None = None
    state: PenState | int | None = None
    """The latest state seen, from telemetry, a status answer or a state-change event."""
    faults: FaultFlags = field(default_factory=lambda: FaultFlags(0))
    """The active faults, from the latest telemetry sample or status answer."""
    strokes_per_s: float | None = None
    """Strokes counted over the last second of pen time (what the needles actually did)."""
    elapsed_s: float = 0.0
    """Seconds since the monitor started."""
    events: deque[LoggedEvent] = field(default_factory=lambda: deque(maxlen=64))
    events_seen: int = 0
    """Events observed in total (the deque keeps the latest only)."""
    _window: deque[tuple[float, int]] = field(default_factory=deque)

    def observe_sample(self, sample: TelemetrySample) -> None:
        self.sample = sample
        self.state = sample.state
        self.faults = sample.faults
        window = self._window
        if window and (sample.time_s < window[-1][0] or sample.stroke_count < window[-1][1]):
            window.clear()  # the pen restarted: its clock and counter began again
        window.append((sample.time_s, sample.stroke_count))
        while window and sample.time_s - window[0][0] > STROKE_WINDOW_S:
            window.popleft()
        span = window[-1][0] - window[0][0]
        if span >= STROKE_WINDOW_S / 4:
            self.strokes_per_s = (window[-1][1] - window[0][1]) / span
        elif len(window) == 1 and sample.state != PenState.RUNNING:
            self.strokes_per_s = 0.0

    def observe_status(self, status: Status) -> None:
        self.status = status
        self.state = status.state
        self.faults = status.faults

    def observe_event(self, event: PenEvent, at_s: float) -> None:
        if isinstance(event, StateChanged):
            self.state = event.state
        elif isinstance(event, LinkUp):
            self.observe_status(event.status)
        self.events.append(LoggedEvent(at_s, *describe_event(event)))
        self.events_seen += 1


def describe_event(event: PenEvent) -> tuple[str, str]:
    """One line of text for an event, and its tone (``info``, ``good``, ``bad``)."""
    if isinstance(event, FaultEvent):
        name = _fault_names(event.fault)
        if event.active:
            extra = f" ({event.detail} ms silent)" if event.fault == FaultFlags.WATCHDOG else ""
            return f"fault {name} raised{extra}", "bad"
        return f"fault {name} cleared", "good"
    if isinstance(event, StateChanged):
        known = _as_state(event.state)
        tone = "good" if known == PenState.RUNNING else "bad" if known == PenState.FAULT else "info"
        if event.previous is None:
            return f"state {_state_name(event.state)}", tone
        return f"state {_state_name(event.previous)} → {_state_name(event.state)}", tone
    if isinstance(event, LinkDown):
        return f"link down: {event.reason}", "bad"
    if isinstance(event, LinkUp):
        tries = f", {event.attempts} attempts" if event.attempts != 1 else ""
        return f"link up after {event.down_s:.1f} s{tries}", "good"
    if isinstance(event, CartridgeChanged):
        cart = event.cartridge
        what = _enum_name(cart.state)
        ident = f" {cart.cartridge_id}" if cart.cartridge_id else ""
        return f"cartridge {what}{ident}", "info"
    if isinstance(event, QueueOverflow):
        return f"{event.subscription} queue fell behind: {event.dropped} dropped", "bad"
    return type(event).__name__, "info"  # pragma: no cover - a newer driver's event


# ---------------------------------------------------------------------- rendering

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

_TONES = {"good": "32", "bad": "1;31", "info": ""}
_STATE_STYLE = {
    PenState.RUNNING: "1;32",
    PenState.FAULT: "1;31",
    PenState.IDLE: "1;36",
    PenState.BOOTING: "1;33",
    PenState.CALIBRATING: "1;33",
}
LABEL = 9
"""Width of the label column ("depth", "rate", ...)."""

Segment = tuple[str, str]
"""Text and its SGR style (``""``: plain)."""


def strip_ansi(text: str) -> str:
    """``text`` as it shows on screen (for tests and width checks)."""
    return _ANSI.sub("", text)


def render(
    view: MonitorView, width: int = 80, color: bool = False, *, ascii_only: bool = False
) -> list[str]:
    """The panel for ``view``: lines of at most ``width`` visible characters.

    With ``color`` the lines carry ANSI colours (state, faults, bars, link); without it they
    are plain text. ``ascii_only`` draws bars with ``#`` and ``-`` for outputs that cannot
    encode box-drawing characters.
    """
    width = max(20, width)
    glyphs = _ASCII if ascii_only else _UNICODE
    info, st, s, q = view.info, view.status, view.sample, view.link
    stale = q is not None and (
        q.state != "up" or (q.last_frame_age_s is not None and q.last_frame_age_s > STALE_AFTER_S)
    )
    value_style = "2" if stale else ""
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
    lines.append([(left + " " * gap + right, "1;7")])

    # State, faults, cartridge.
    state_text = _state_name(view.state) if view.state is not None else "unknown"
    row: list[Segment] = [_label("state"), (state_text, _state_style(view.state))]
    note = " (last known)" if stale else ""
    row.append((note + " " * max(0, 12 - len(state_text) - len(note)) + "  ", "2"))
    if view.faults:
        row += [("faults ", "2"), (_fault_names(view.faults), "1;31")]
    else:
        row += [("faults ", "2"), ("none", "")]
    if st is not None:
        row += [("   cartridge ", "2"), (_enum_name(st.cartridge).lower().replace("_", " "), "")]
    lines.append(row)

    # Depth and rate, each with a bar against the pen's range and a marker at the set point.
    bar_w = max(8, min(30, width - LABEL - 10 - 28))
    depth_set = s.depth_setpoint_mm if s is not None else (st.depth_setpoint_mm if st else None)
    depth_max = info.depth_max_mm if info is not None else None
    row = [_label("depth")]
    if s is not None and depth_max:
        row.append((f"{s.depth_measured_mm:5.2f} mm ", value_style or "1"))
        row += _bar(
            s.depth_measured_mm / depth_max, bar_w, "36", glyphs, _ratio(depth_set, depth_max)
        )
    else:
        row.append(("  -   mm ", "2"))
    if depth_set is not None:
        row.append((f"  set {depth_set:.2f} mm", ""))
    if info is not None:
        row.append((f"   {info.depth_min_mm:g}–{info.depth_max_mm:g} mm", "2"))
    lines.append(row)

    rate_set = st.rate_setpoint_hz if st is not None else None
    rate_max = info.rate_max_hz if info is not None else None
    row = [_label("rate")]
    if s is not None and rate_max:
        row.append((f"{s.stroke_rate_hz:5.1f} Hz ", value_style or "1"))
        row += _bar(s.stroke_rate_hz / rate_max, bar_w, "35", glyphs, _ratio(rate_set, rate_max))
    else:
        row.append(("  -   Hz ", "2"))
    if rate_set is not None:
        row.append((f"  set {rate_set:g} Hz", ""))
    if info is not None:
        span = (
            f"{info.rate_min_hz:g} Hz fixed"
            if info.fixed_rate
            else f"{info.rate_min_hz:g}–{info.rate_max_hz:g} Hz"
        )
        row.append((f"   {span}", "2"))
    lines.append(row)

    # Strokes and motor current.
    strokes = s.stroke_count if s is not None else (st.stroke_count if st is not None else None)
    row = [_label("strokes")]
    row.append((f"{strokes:,}" if strokes is not None else "-", value_style or "1"))
    if view.strokes_per_s is not None:
        row.append((f"   {view.strokes_per_s:.1f}/s", value_style))
    if s is not None:
        row += [("   motor ", "2"), (f"{s.motor_current_ma} mA", value_style)]
    lines.append(row)

    # Battery: volts, and a bar with the percentage when the pen reports one.
    volts = s.battery_v if s is not None else (st.battery_v if st is not None else None)
    row = [_label("battery")]
    if volts is None:
        row.append(("-", "2"))
    elif volts == 0:
        row.append(("mains powered", ""))
    else:
        row.append((f"{volts:.2f} V ", value_style or "1"))
        if st is not None and st.battery_v:
            pct = max(0, min(100, st.battery_percent))
            tone = "32" if pct > 40 else ("33" if pct > 15 else "1;31")
            row += _bar(pct / 100, min(bar_w, 20), tone, glyphs)
            row.append((f" {pct} %", tone))
    lines.append(row)

    # Link quality.
    row = [_label("link")]
    if q is None:
        row.append(("-", "2"))
        lines.append(row)
    else:
        tone = {"up": "1;32", "down": "1;31"}.get(q.state, "1;33")
        row.append((q.state.upper(), tone))
        if q.last_frame_age_s is not None:
            age_tone = "1;31" if q.last_frame_age_s > STALE_AFTER_S else ""
            row += [("   last frame ", "2"), (f"{q.last_frame_age_s:.2f} s", age_tone)]
            row.append((" ago", "2"))
        if q.rtt_ms_p50 is not None:
            p99 = f"{q.rtt_ms_p99:.1f}" if q.rtt_ms_p99 is not None else "-"
            row += [("   rtt ", "2"), (f"{q.rtt_ms_p50:.1f} / {p99} ms", ""), (" p50/p99", "2")]
        lines.append(row)
        counts: list[Segment] = [(" " * LABEL, "")]
        for n, what, bad in (
            (q.frames_ok, "frames ok", False),
            (q.frames_dropped, "dropped", True),
            (q.frames_lost, "lost", True),
            (q.retries, "retries", True),
            (q.reconnects, "reconnects", True),
        ):
            counts += [(f"{n:,}", "33" if bad and n else ""), (f" {what}  ", "2")]
        lines.append(counts)

    # The latest events, oldest first.
    shown = list(view.events)[-EVENT_LINES:]
    if not shown:
        lines.append([_label("events"), ("none yet", "2")])
    for i, ev in enumerate(shown):
        label = _label("events") if i == 0 else (" " * LABEL, "")
        lines.append([label, (f"{ev.at_s:6.1f} s  ", "2"), (ev.text, _TONES.get(ev.tone, ""))])

    return [_fit(row, width, color, ascii_only) for row in lines]


def plain_line(view: MonitorView) -> str:
    """One line for a log: the same numbers as the panel, no colour, no bars."""
    s, st, q = view.sample, view.status, view.link
    parts = [f"{view.elapsed_s:6.1f} s", _state_name(view.state) if view.state is not None else "?"]
    if s is not None:
        depth_set = f"/{s.depth_setpoint_mm:.2f}"
        parts.append(f"depth {s.depth_measured_mm:.2f}{depth_set} mm")
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
    parts.append(f"faults {_fault_names(view.faults) if view.faults else 'none'}")
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


def _fit(row: Sequence[Segment], width: int, color: bool, ascii_only: bool = False) -> str:
    """Join segments into one line of at most ``width`` visible characters; style if asked."""
    out: list[str] = []
    room = width
    for text, style in row:
        if room <= 0:
            break
        if ascii_only:
            text = to_ascii(text)
        if len(text) > room:
            text = text[: room - 1] + ("~" if ascii_only else "…") if room > 1 else text[:room]
        room -= len(text)
        out.append(f"\x1b[{style}m{text}\x1b[0m" if color and style and text else text)
    return "".join(out).rstrip() if not color else "".join(out)


@dataclass(frozen=True, slots=True)
class _Glyphs:
    full: str
    half: str
    empty: str
    mark: str


_UNICODE = _Glyphs("━", "╸", "─", "┃")
_ASCII = _Glyphs("#", "#", "-", "|")


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
        if i == mark_at:
            seg: Segment = (g.mark, "1")
        else:
            seg = (ch, style if i < filled else "90")
        if segments and segments[-1][1] == seg[1]:
            segments[-1] = (segments[-1][0] + seg[0], seg[1])
        else:
            segments.append(seg)
    return segments


def _ratio(value: float | None, full: float) -> float | None:
    return None if value is None or not full else value / full


def _label(text: str) -> Segment:
    return (f"{text:<{LABEL}}", "2")


def _clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def _as_state(state: PenState | int | None) -> PenState | None:
    if isinstance(state, PenState):
        return state
    try:
        return PenState(state) if state is not None else None
    except ValueError:
        return None


def _state_name(state: PenState | int | None) -> str:
    known = _as_state(state)
    return known.name if known is not None else f"state {state}"


def _state_style(state: PenState | int | None) -> str:
    known = _as_state(state)
    return _STATE_STYLE.get(known, "1") if known is not None else "1;33"


def _enum_name(value: CartridgeState | int) -> str:
    return value.name if isinstance(value, CartridgeState) else str(value)


def _fault_names(faults: FaultFlags) -> str:
    names = [f.name for f in FaultFlags if f in faults and f.name]
    unknown = int(faults) & ~sum(int(f) for f in FaultFlags)
    if unknown:
        names.append(f"0x{unknown:04X}")
    return ", ".join(names) or "none"


# ---------------------------------------------------------------------- the loop


class _HeldLogs(logging.Handler):
    """Holds the driver's and simulator's log records back while the panel is on screen.

    A warning printed to the terminal mid-panel (a lost link, say) would shift the panel
    down a line and leave a torn frame; what it says is shown as an event anyway. The records
    are handed back to their loggers, in order, once the terminal is restored.
    """

    LOGGERS = ("pendriver", "simulator")
    KEEP = 200

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.records: deque[logging.LogRecord] = deque(maxlen=self.KEEP)
        self.dropped = 0
        self._saved: list[tuple[logging.Logger, bool, list[logging.Handler]]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.records) == self.KEEP:
            self.dropped += 1
        self.records.append(record)

    def __enter__(self) -> _HeldLogs:
        for name in self.LOGGERS:
            logger = logging.getLogger(name)
            self._saved.append((logger, logger.propagate, list(logger.handlers)))
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
            logger.addHandler(self)
            logger.propagate = False
        return self

    def __exit__(self, *exc: object) -> None:
        for logger, propagate, handlers in self._saved:
            logger.removeHandler(self)
            for handler in handlers:
                logger.addHandler(handler)
            logger.propagate = propagate
        self._saved.clear()
        for record in self.records:
            logging.getLogger(record.name).handle(record)
        if self.dropped:
            logging.getLogger("pendriver").warning(
                "%d earlier log messages were dropped while pen monitor ran", self.dropped
            )
        self.records.clear()


class _Screen:
    """Where frames go: redrawn in place on a terminal, or plain lines to a file or pipe."""

    HIDE_CURSOR = "\x1b[?25l"
    SHOW_CURSOR = "\x1b[?25h"
    RESET = "\x1b[0m"

    def __init__(
        self,
        out: TextIO,
        *,
        tty: bool,
        color: bool,
        size: tuple[int, int] | None,
    ) -> None:
        self.out = out
        self.tty = tty
        self.color = color
        self.size = size
        self.ascii_only = not _can_encode(out, _UNICODE.full + _UNICODE.mark + "–→…")
        self._drawn = 0
        self._width: int | None = None
        self._last_line: float | None = None
        self._events_printed = 0

    def begin(self, view: MonitorView) -> None:
        if self.tty:
            self._write(self.HIDE_CURSOR)
        else:
            self._write(header_line(view) + "\n")

    def draw(self, view: MonitorView) -> None:
        if self.tty:
            self._draw_panel(view)
        else:
            self._draw_lines(view)

    def end(self) -> None:
        """Restore the terminal: called however the loop ends (Ctrl-C and errors included)."""
        if self.tty:
            self._write(self.RESET + self.SHOW_CURSOR)

    def _draw_panel(self, view: MonitorView) -> None:
        cols, rows = self.size or _terminal_size(self.out)
        width = min(cols, MAX_WIDTH)
        lines = render(view, width, self.color, ascii_only=self.ascii_only)[: max(1, rows - 1)]
        parts: list[str] = []
        if self._width is not None and width != self._width:
            parts.append("\x1b[H\x1b[2J")  # resized: old lines have rewrapped; start afresh
        elif self._drawn:
            parts.append(f"\x1b[{self._drawn}A\r")
        self._width = width
        parts += ["\x1b[2K" + line + "\n" for line in lines]
        parts.append("\x1b[J")  # the panel may have shrunk: clear what is below it
        self._drawn = len(lines)
        self._write("".join(parts))

    def _draw_lines(self, view: MonitorView) -> None:
        new = view.events_seen - self._events_printed
        for ev in list(view.events)[-new:] if new > 0 else []:
            text = to_ascii(ev.text) if self.ascii_only else ev.text
            self._write(f"{ev.at_s:6.1f} s  event: {text}\n")
        self._events_printed = view.events_seen
        due = self._last_line is None or view.elapsed_s - self._last_line >= LINE_PERIOD_S - 1e-9
        if due:
            self._last_line = view.elapsed_s
            self._write(plain_line(view) + "\n")

    def final(self, view: MonitorView) -> None:
        """The last frame: always drawn, so the output ends with the state at the end."""
        if self.tty:
            self._draw_panel(view)
        else:
            self._last_line = None
            self._draw_lines(view)

    def _write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()


def _can_encode(out: TextIO, sample: str) -> bool:
    encoding = getattr(out, "encoding", None)
    if not encoding:
        return True
    try:
        sample.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def _terminal_size(out: TextIO) -> tuple[int, int]:
    try:
        size = os.get_terminal_size(out.fileno())
    except (AttributeError, OSError, ValueError):
        return 80, 24
    return size.columns, size.lines


def wants_color(out: TextIO) -> bool:
    """Colour on a terminal, unless ``NO_COLOR`` is set (https://no-color.org) or TERM=dumb."""
    return out.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


async def run_monitor(
    pen: Pen,
    out: TextIO,
    *,
    seconds: float | None = None,
    tty: bool | None = None,
    color: bool | None = None,
    size: tuple[int, int] | None = None,
    status_interval_s: float = STATUS_INTERVAL_S,
    on_frame: Callable[[MonitorView], None] | None = None,
) -> MonitorView:
    """Watch an open ``pen`` and draw it to ``out`` until ``seconds`` pass (or forever).

    ``tty`` (default: ``out.isatty()``, and TERM is not ``dumb``) chooses the in-place panel
    over plain lines; ``color`` defaults to :func:`wants_color`; ``size`` (columns, rows)
    overrides the terminal's. ``on_frame`` is called with the view before every frame (for
    tests and embedders). Returns the final view. Raises :class:`PenError` if the connection
    ends for good (the driver gave up reconnecting).
    """
    if seconds is not None and not seconds > 0:
        raise PenError(f"--seconds must be positive, got {seconds:g}")
    loop = asyncio.get_running_loop()
    if tty is None:
        tty = out.isatty() and os.environ.get("TERM") != "dumb"
    screen = _Screen(out, tty=tty, color=wants_color(out) if color is None else color, size=size)
    began = loop.time()
    view = MonitorView(url=pen.transport.url, info=pen.device_info)
    removers = [
        pen.on_telemetry(view.observe_sample),
        pen.on_event(lambda event: view.observe_event(event, loop.time() - began)),
    ]
    with _HeldLogs() if tty else contextlib.nullcontext():
        try:
            await _draw_until(pen, view, screen, began, seconds, status_interval_s, on_frame)
        finally:
            for remove in removers:
                remove()
    return view


async def _draw_until(
    pen: Pen,
    view: MonitorView,
    screen: _Screen,
    began: float,
    seconds: float | None,
    status_interval_s: float,
    on_frame: Callable[[MonitorView], None] | None,
) -> None:
    """The drawing loop of :func:`run_monitor`; the terminal is restored however it ends."""
    loop = asyncio.get_running_loop()
    poller: asyncio.Task[None] | None = None
    screen.begin(view)
    try:
        with contextlib.suppress(PenError):  # a pen busy reconnecting answers later
            view.observe_status(await pen.status())
        poller = asyncio.create_task(_poll_status(pen, view, status_interval_s))
        while True:
            now = loop.time()
            view.elapsed_s = now - began
            view.link = pen.link_quality
            if poller.done():
                poller.result()  # the connection is over: raise why
            if seconds is not None and view.elapsed_s >= seconds - 1e-9:
                break
            if on_frame is not None:
                on_frame(view)
            screen.draw(view)
            wait = TTY_REFRESH_S if seconds is None else min(TTY_REFRESH_S, began + seconds - now)
            await asyncio.sleep(max(0.0, wait))
        if on_frame is not None:
            on_frame(view)
        screen.final(view)
    finally:
        if poller is not None:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError, PenError):
                await poller
        screen.end()


async def _poll_status(pen: Pen, view: MonitorView, interval_s: float) -> None:
    """Ask for STATUS every ``interval_s``; ends with the link error once the driver gives up."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            status = await pen.status()
        except PenError:
            if pen.link_state == "closed":
                raise
            continue  # down and reconnecting (or one answer lost): the panel already says so
        view.observe_status(status)


async def monitor(
    url: str,
    out: TextIO,
    *,
    seconds: float | None = None,
    config: DriverConfig | None = None,
    capture: str | Path | None = None,
    tty: bool | None = None,
    color: bool | None = None,
) -> MonitorView:
    """Connect to the pen at ``url`` (reconnecting after link loss) and watch it."""
    if seconds is not None and not seconds > 0:
        raise PenError(f"--seconds must be positive, got {seconds:g}")
    async with connect(url, config=config or MONITOR_CONFIG, capture=capture) as pen:
        return await run_monitor(pen, out, seconds=seconds, tty=tty, color=color)
