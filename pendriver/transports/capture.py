"""Recording a wire capture as the bytes cross (format: :mod:`firmware_protocol.capture`).

:class:`CaptureTransport` wraps any transport and appends every chunk, both directions, to a
capture file as it crosses, flushed line by line, so a killed process loses nothing already
sent. Reading a capture back is :mod:`pendriver.captures`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import IO

from firmware_protocol.capture import Direction, format_record

from ..errors import PenError
from .base import Transport


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
