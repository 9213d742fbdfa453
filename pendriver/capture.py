"""Recording and reading wire captures (format: :mod:`firmware_protocol.capture`).

:class:`CaptureTransport` wraps any transport and appends every chunk, both directions, to a
capture file as it crosses, flushed line by line; :func:`decode_capture` turns a capture back
into the messages and errors each side's decoder saw, for ``pen decode``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from firmware_protocol import DecodeError, MessageReceived, StreamDecoder
from firmware_protocol.capture import (
    CaptureFormatError,
    CaptureRecord,
    Direction,
    format_record,
    parse_record,
)

from .errors import PenError
from .transports import Transport


class CaptureTransport(Transport):
    """A transport that records everything it moves to ``path`` (appending)."""

    def __init__(self, inner: Transport, path: str | Path) -> None:
        self.inner = inner
        self.url = inner.url
        self.path = Path(path)
        self._file: IO[str] | None = None
        self._t0 = 0.0

    def __getattr__(self, name: str) -> object:
        # Reach-through for attributes of the wrapped transport (e.g. a simulator's firmware).
        return getattr(self.inner, name)

    def _record(self, direction: Direction, data: bytes) -> None:
        if self._file is not None and data:
            self._file.write(format_record(time.monotonic() - self._t0, direction, data) + "\n")
            self._file.flush()

    async def open(self) -> None:
        try:
            self._file = self.path.open("a", encoding="utf-8")
        except OSError as exc:
            raise PenError(f"cannot write the capture {self.path}: {exc.strerror}") from None
        self._t0 = time.monotonic()
        await self.inner.open()

    async def read(self) -> bytes:
        data = await self.inner.read()
        self._record("p2h", data)
        return data

    async def write(self, data: bytes) -> None:
        self._record("h2p", data)
        await self.inner.write(data)

    async def reopen(self) -> None:
        """A reconnect goes to the wrapped transport's own ``reopen`` (the simulator's keeps
        the same pen running); the capture file stays open and its clock keeps counting, so
        one file holds the whole session, before and after the loss."""
        await self.inner.reopen()

    async def close(self) -> None:
        await self.inner.close()
        if self._file is not None:
            self._file.close()
            self._file = None


@dataclass(frozen=True, slots=True)
class DecodedEntry:
    """One message (or one dropped frame) from a capture, with when and which way it went."""

    t: float
    direction: Direction
    event: MessageReceived | DecodeError


def read_capture(lines: Iterable[str], source: str = "capture") -> Iterator[CaptureRecord]:
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield parse_record(line)
        except CaptureFormatError as exc:
            raise PenError(f"{source}, line {number}: {exc}") from None


def decode_capture(records: Iterable[CaptureRecord]) -> Iterator[DecodedEntry]:
    """Every event each direction's decoder produced, stamped with its chunk's time."""
    decoders = {"h2p": StreamDecoder(), "p2h": StreamDecoder()}
    for record in records:
        for event in decoders[record.direction].feed(record.data):
            yield DecodedEntry(record.t, record.direction, event)


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
