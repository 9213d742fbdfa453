"""The one small abstract link every transport implements (the python-can ``BusABC`` idea)."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod

from ..errors import LinkLost


class Transport(ABC):
    """A byte stream to one pen. Framing is not its business: it moves bytes."""

    url: str

    @abstractmethod
    async def open(self) -> None:
        """Open the link; raises :class:`PenConnectionError` with a one-line reason."""

    @abstractmethod
    async def read(self) -> bytes:
        """Wait for the next bytes; raises :class:`LinkLost` when the link is gone."""

    @abstractmethod
    async def write(self, data: bytes) -> None:
        """Send bytes; raises :class:`LinkLost` when the link is gone."""

    @abstractmethod
    async def close(self) -> None:
        """Close the link; safe to call twice."""

    async def reopen(self) -> None:
        """Open the link again after a loss, to the same pen (what a reconnect does)."""
        await self.close()
        await self.open()


class ChunkQueue:
    """Received chunks waiting for ``read()``, ending in the error that closed the link.

    Every transport receives in callbacks and is read by one task; the error is sticky, so
    every read after the link died fails the same way.
    """

    def __init__(self) -> None:
        self._items: asyncio.Queue[bytes | LinkLost] = asyncio.Queue()
        self.error: LinkLost | None = None

    def push(self, data: bytes) -> None:
        if self.error is None:
            self._items.put_nowait(data)

    def fail(self, error: LinkLost) -> None:
        """The link is gone: reads drain what arrived before, then raise ``error``."""
        if self.error is None:
            self.error = error
            self._items.put_nowait(error)

    async def get(self) -> bytes:
        item = await self._items.get()
        if isinstance(item, LinkLost):
            self._items.put_nowait(item)
            raise item
        return item


class QueueProtocol(asyncio.Protocol):
    """An asyncio protocol that queues received chunks, for transports built on asyncio's."""

    def __init__(self) -> None:
        self.chunks = ChunkQueue()
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.chunks.push(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.chunks.fail(LinkLost(f"link closed{f': {exc}' if exc else ''}"))

    async def next_chunk(self) -> bytes:
        return await self.chunks.get()
