"""From telemetry to a density report: the glue between the driver's samples and the engine.

Used by ``pen density FILE`` (a recorded capture) and ``pen run --zone`` (live). The engine
itself (:mod:`pendriver.density`) takes arrays; this module turns captures and samples into
those arrays, with the stroke counter unwrapped (it is a u32 on the wire).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from firmware_protocol import MessageReceived
from firmware_protocol import messages as m

from .capture import decode_capture, read_capture
from .density import Grid, from_cartridge, square_grid, unwrap_counter
from .errors import PenError
from .models import TelemetrySample


@dataclass(frozen=True, slots=True)
class Zone:
    """A rectangular treatment zone in mm, lower-left corner at ``origin_mm``."""

    width_mm: float
    height_mm: float
    origin_mm: tuple[float, float] = (0.0, 0.0)

    @classmethod
    def parse(cls, text: str) -> Zone:
        """``WxH`` or ``WxH@X,Y`` in mm, e.g. ``40x30`` or ``40x30@-20,-15``."""
        size, _, at = text.partition("@")
        try:
            w, h = (float(v) for v in size.lower().split("x"))
            origin = (0.0, 0.0)
            if at:
                ox, oy = (float(v) for v in at.split(","))
                origin = (ox, oy)
        except ValueError:
            raise PenError(
                f"zone must be WxH or WxH@X,Y in mm (e.g. 40x30), got {text!r}"
            ) from None
        if not (w > 0 and h > 0):
            raise PenError(f"zone must have a positive width and height, got {text!r}")
        return cls(w, h, origin)

    def grid(self, cell_mm: float) -> Grid:
        return Grid(
            origin_mm=self.origin_mm, size_mm=(self.width_mm, self.height_mm), cell_mm=cell_mm
        )

    @property
    def rect_mm(self) -> tuple[float, float, float, float]:
        return (self.origin_mm[0], self.origin_mm[1], self.width_mm, self.height_mm)


@dataclass(frozen=True, slots=True)
class TelemetryArrays:
    times_s: NDArray[np.float64]
    stroke_counts: NDArray[np.int64]
    x_mm: NDArray[np.float64]
    y_mm: NDArray[np.float64]

    @classmethod
    def from_samples(cls, samples: Sequence[TelemetrySample]) -> TelemetryArrays:
        return cls(
            np.array([s.time_s for s in samples], dtype=np.float64),
            unwrap_counter(np.array([s.stroke_count for s in samples], dtype=np.int64)),
            np.array([s.tip_x_mm for s in samples], dtype=np.float64),
            np.array([s.tip_y_mm for s in samples], dtype=np.float64),
        )


def pen_sessions(samples: Sequence[TelemetrySample]) -> list[TelemetryArrays]:
    """Samples in arrival order, cut into runs whose pen time rises.

    A capture is appended to, so one file may hold several runs, each from a pen whose clock
    started at 0 (a new ``sim://`` pen, or a pen that rebooted): the time going back starts a
    new run, and each run is mapped on its own (sorting them together would interleave two
    passes). A sample repeating the previous one's time carries nothing new and is dropped.
    """
    runs: list[list[TelemetrySample]] = []
    for sample in samples:
        last = runs[-1][-1].time_s if runs else None
        if last is None or sample.time_s < last:
            runs.append([sample])
        elif sample.time_s > last:
            runs[-1].append(sample)
    return [TelemetryArrays.from_samples(run) for run in runs]


def telemetry_from_capture(
    lines: Iterable[str], source: str
) -> tuple[list[TelemetryArrays], NDArray[np.float64] | None]:
    """The pen's telemetry in a capture, as :func:`pen_sessions`, and the needles of the
    last cartridge it reported."""
    samples: list[TelemetrySample] = []
    needles: NDArray[np.float64] | None = None
    for entry in decode_capture(read_capture(lines, source)):
        event = entry.event
        if entry.direction != "p2h" or not isinstance(event, MessageReceived):
            continue
        message = event.message
        if isinstance(message, m.Telemetry):
            samples.append(TelemetrySample.from_message(message))
        elif isinstance(message, m.Cartridge) and message.needles:
            needles = from_cartridge(tuple((n.x_um / 1000, n.y_um / 1000) for n in message.needles))
    if len(samples) < 2:
        raise PenError(f"{source}: fewer than two TELEMETRY frames from the pen: nothing to map")
    return pen_sessions(samples), needles


def parse_needle_grid(text: str) -> NDArray[np.float64]:
    """``ROWSxCOLS:PITCH_MM`` (e.g. ``4x4:0.6``) as a needle layout."""
    try:
        shape, _, pitch = text.partition(":")
        rows, cols = (int(v) for v in shape.lower().split("x"))
        return square_grid(rows, cols, float(pitch))
    except ValueError:
        raise PenError(f"needles must be ROWSxCOLS:PITCH_MM (e.g. 4x4:0.6), got {text!r}") from None
