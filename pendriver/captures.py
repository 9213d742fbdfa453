"""Reading a wire capture back: the messages and errors each side's decoder saw, and the
telemetry and cartridge a pass left in it (``pen decode``, ``pen density``).

Recording is :class:`pendriver.transports.capture.CaptureTransport`; the line format is
:mod:`firmware_protocol.capture`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from firmware_protocol import DecodeError, MessageReceived, StreamDecoder
from firmware_protocol import messages as m
from firmware_protocol.capture import CaptureFormatError, CaptureRecord, Direction, parse_record

from .errors import PenError
from .jsondata import jsonable
from .models import CartridgeInfo, TelemetrySample


@dataclass(frozen=True, slots=True)
class DecodedEntry:
    """One message (or one dropped frame) from a capture, with when and which way it went."""

    t: float
    direction: Direction
    event: MessageReceived | DecodeError


Warn = Callable[[str], None]
"""Where a reader's warnings go (``pen`` prints them as ``pen: ...`` lines on stderr)."""


def _log_warning(text: str) -> None:
    logging.getLogger("pendriver").warning("%s", text)


def read_capture(
    lines: Iterable[str], source: str = "capture", *, warn: Warn = _log_warning
) -> Iterator[CaptureRecord]:
    """The records of a capture's lines; a damaged line is a :class:`PenError` naming it.

    Except the last line when it is cut off (not JSON at all): a recording killed mid-write
    ends so, with or without its newline (a later append or an editor may add one), and
    everything before it is good. It is reported to ``warn`` and reading stops there.
    """
    numbered = ((n, line) for n, line in enumerate(lines, 1) if line.strip())
    ahead = next(numbered, None)
    while ahead is not None:
        number, line = ahead
        ahead = next(numbered, None)
        try:
            record = parse_record(line)
        except CaptureFormatError as exc:
            if ahead is None and _cut_off(line):
                warn(
                    f"{source}, line {number}: the last line is cut off (the recording was "
                    "interrupted while writing it); read up to it"
                )
                return
            raise PenError(f"{source}, line {number}: {exc}") from None
        yield record


@dataclass(frozen=True, slots=True)
class CutOffFrame(DecodeError):
    """Bytes at the end of one direction of a capture that no delimiter closed: the recording
    stopped inside a frame, which is lost (not an event of the decoder, which would wait)."""

    length: int

    def describe(self) -> str:
        return f"the capture ends inside a frame: {self.length} bytes without a delimiter (cut off)"


def _cut_off(line: str) -> bool:
    """Whether ``line`` looks like a record whose writing stopped: not JSON at all (a cut
    record never is, its closing brace is its last character). Whole JSON that is not a record
    is damage of another kind, an error wherever it is."""
    try:
        json.loads(line)
    except ValueError:
        return True
    return False


def decode_capture(records: Iterable[CaptureRecord]) -> Iterator[DecodedEntry]:
    """Every event each direction's decoder produced, stamped with its chunk's time; then,
    for a direction whose last frame has no delimiter, a :class:`CutOffFrame` stamped with
    that direction's last chunk."""
    decoders = {"h2p": StreamDecoder(), "p2h": StreamDecoder()}
    last: dict[Direction, float] = {}
    for record in records:
        last[record.direction] = record.t
        for event in decoders[record.direction].feed(record.data):
            yield DecodedEntry(record.t, record.direction, event)
    for direction, t in sorted(last.items(), key=lambda item: item[1]):
        held = decoders[direction].buffered
        if held:
            yield DecodedEntry(t, direction, CutOffFrame(held))


def describe(entry: DecodedEntry) -> str:
    """One line for ``pen decode``."""
    arrow = "host → pen" if entry.direction == "h2p" else "pen → host"
    event = entry.event
    if isinstance(event, MessageReceived):
        message = event.message
        fields = " ".join(
            f"{f.name}={getattr(message, f.name)!r}" for f in dataclasses.fields(message)
        )
        tag = " (answer)" if event.is_response else " (retry)" if event.is_retry else ""
        return f"{entry.t:12.6f}  {arrow}  seq {event.seq:5d}  {message.NAME}{tag} {fields}"
    return f"{entry.t:12.6f}  {arrow}  !! {event.describe()}"


def as_json(entry: DecodedEntry) -> dict[str, Any]:
    """One JSON object for ``pen decode --json`` (one a line): the message and its fields, or
    the decoder's complaint about a frame it dropped."""
    base: dict[str, Any] = {"t": entry.t, "direction": entry.direction}
    event = entry.event
    if isinstance(event, MessageReceived):
        message = event.message
        return base | {
            "seq": event.seq,
            "message": message.NAME,
            "answer": event.is_response,
            "retry": event.is_retry,
            "fields": jsonable(message),
        }
    return base | {"error": event.describe()}


@dataclass(frozen=True, slots=True)
class CaptureTelemetry:
    """What a pass left in a capture: the pen's telemetry in arrival order, and the needles of
    the last cartridge it reported (``None`` if it reported none with needle positions)."""

    samples: tuple[TelemetrySample, ...]
    needles_mm: tuple[tuple[float, float], ...] | None


def telemetry_in_capture(
    lines: Iterable[str], source: str, *, warn: Warn = _log_warning
) -> CaptureTelemetry:
    """The pen's TELEMETRY and CARTRIDGE messages in a capture (the host's side is skipped)."""
    samples: list[TelemetrySample] = []
    needles: tuple[tuple[float, float], ...] | None = None
    for entry in decode_capture(read_capture(lines, source, warn=warn)):
        event = entry.event
        if entry.direction != "p2h" or not isinstance(event, MessageReceived):
            continue
        message = event.message
        if isinstance(message, m.Telemetry):
            samples.append(TelemetrySample.from_message(message))
        elif isinstance(message, m.Cartridge) and message.needles:
            needles = CartridgeInfo.from_message(message).needles_mm
    if len(samples) < 2:
        raise PenError(f"{source}: fewer than two TELEMETRY frames from the pen: nothing to map")
    return CaptureTelemetry(tuple(samples), needles)
