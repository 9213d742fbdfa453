"""What the monitor knows about the pen now: fed by the driver's callbacks, read by the drawing.

Kept apart from the drawing and the loop so that a view can be built by hand in a test (or by
another front end, such as the workstation's live page) and drawn without a pen or a clock.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from firmware_protocol.messages import FaultFlags, PenState

from ..events import CartridgeChanged, LinkDown, LinkUp, PenEvent, QueueOverflow, StateChanged
from ..models import DeviceInfo, FaultEvent, LinkQuality, Status, TelemetrySample
from ..naming import fault_names

STROKE_WINDOW_S = 1.0
"""Pen time over which strokes per second are counted."""


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
    state: PenState | None = None
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


def state_name(state: PenState | None) -> str:
    """A state's name (``UNKNOWN_9`` for one a newer pen added); ``unknown`` before anything
    was heard."""
    return "unknown" if state is None else state.name


def describe_event(event: PenEvent) -> tuple[str, str]:
    """One line of text for an event, and its tone (``info``, ``good``, ``bad``)."""
    if isinstance(event, FaultEvent):
        name = fault_names(event.fault)
        if event.active:
            extra = f" ({event.detail} ms silent)" if event.fault == FaultFlags.WATCHDOG else ""
            return f"fault {name} raised{extra}", "bad"
        return f"fault {name} cleared", "good"
    if isinstance(event, StateChanged):
        tone = (
            "good"
            if event.state == PenState.RUNNING
            else "bad"
            if event.state == PenState.FAULT
            else "info"
        )
        if event.previous is None:
            return f"state {state_name(event.state)}", tone
        return f"state {state_name(event.previous)} → {state_name(event.state)}", tone
    if isinstance(event, LinkDown):
        return f"link down: {event.reason}", "bad"
    if isinstance(event, LinkUp):
        tries = f", {event.attempts} attempts" if event.attempts != 1 else ""
        return f"link up after {event.down_s:.1f} s{tries}", "good"
    if isinstance(event, CartridgeChanged):
        cart = event.cartridge
        ident = f" {cart.cartridge_id}" if cart.cartridge_id else ""
        return f"cartridge {cart.state.name}{ident}", "info"
    if isinstance(event, QueueOverflow):
        return f"{event.subscription} queue fell behind: {event.dropped} dropped", "bad"
    return type(event).__name__, "info"  # pragma: no cover - a newer driver's event
