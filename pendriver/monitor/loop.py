"""The monitor's loop: feed a view from the driver, draw it until told to stop.

On a terminal the panel is a :class:`rich.live.Live` display redrawn about ten times a second
(rich hides the cursor while it runs and shows it again however the loop ends); anywhere else
(a file, a pipe, ``TERM=dumb``) it is one plain line a second, with events as they come.

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
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from ..config import DriverConfig
from ..driver import Pen, connect
from ..errors import PenError
from .render import UNICODE_SAMPLE, header_line, plain_line, render, to_ascii
from .view import MonitorView

if TYPE_CHECKING:
    from rich.console import Console
    from rich.live import Live

TTY_REFRESH_S = 0.1
"""Redraw period on a terminal: smooth to the eye, cheap to draw."""
LINE_PERIOD_S = 1.0
"""One plain line a second when the output is not a terminal."""
STATUS_INTERVAL_S = 1.0
"""How often STATUS is asked for (set points, battery percentage, cartridge)."""
MAX_WIDTH = 100
"""The panel stops growing beyond this many columns: longer bars are no easier to read."""

MONITOR_CONFIG = DriverConfig(reconnect=True)
"""A monitor outlives a pulled cable: it reconnects by itself (never restarting the motor)."""


def wants_color(out: TextIO) -> bool:
    """Colour on a terminal, unless ``NO_COLOR`` is set (https://no-color.org) or TERM=dumb."""
    return out.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


class _HeldLogs(logging.Handler):
    """Holds the driver's and simulator's log records back while the panel is on screen.

    A warning printed to the terminal mid-panel (a lost link, say) would tear the live
    display; what it says is shown as an event anyway. The records are handed back to their
    loggers, in order, once the terminal is restored.
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


class _Panel:
    """The live panel on a terminal, drawn by rich."""

    def __init__(self, out: TextIO, *, color: bool, size: tuple[int, int] | None) -> None:
        from rich.console import Console
        from rich.live import Live

        width, height = size if size is not None else (None, None)
        self.console: Console = Console(
            file=out,
            force_terminal=True,
            color_system="auto" if color else None,
            width=width,
            height=height,
            highlight=False,
            emoji=False,
        )
        self.color = color
        self.ascii_only = not _can_encode(out, UNICODE_SAMPLE)
        self.live: Live = Live(
            console=self.console,
            auto_refresh=False,
            vertical_overflow="crop",
            redirect_stdout=False,
            redirect_stderr=False,
        )

    def begin(self, view: MonitorView) -> None:
        self.live.start()

    def draw(self, view: MonitorView) -> None:
        width = min(self.console.width, MAX_WIDTH)
        self.live.update(render(view, width, self.color, ascii_only=self.ascii_only), refresh=True)

    final = draw

    def end(self) -> None:
        """Restore the terminal: called however the loop ends (Ctrl-C and errors included)."""
        self.live.stop()


class _Lines:
    """Plain lines for a file or a pipe: a header, then one line a second and every event."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.ascii_only = not _can_encode(out, UNICODE_SAMPLE)
        self._last_line: float | None = None
        self._events_printed = 0

    def begin(self, view: MonitorView) -> None:
        self._write(header_line(view) + "\n")

    def draw(self, view: MonitorView) -> None:
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
        """The last line: always written, so the output ends with the state at the end."""
        self._last_line = None
        self.draw(view)

    def end(self) -> None:
        pass

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

    ``tty`` (default: ``out.isatty()``, and TERM is not ``dumb``) chooses the live panel over
    plain lines; ``color`` defaults to :func:`wants_color`; ``size`` (columns, rows) overrides
    the terminal's. ``on_frame`` is called with the view before every frame (for tests and
    embedders). Returns the final view. Raises :class:`PenError` if the connection ends for
    good (the driver gave up reconnecting).
    """
    if seconds is not None and not seconds > 0:
        raise PenError(f"--seconds must be positive, got {seconds:g}")
    loop = asyncio.get_running_loop()
    if tty is None:
        tty = out.isatty() and os.environ.get("TERM") != "dumb"
    screen: _Panel | _Lines = (
        _Panel(out, color=wants_color(out) if color is None else color, size=size)
        if tty
        else _Lines(out)
    )
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
    screen: _Panel | _Lines,
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
