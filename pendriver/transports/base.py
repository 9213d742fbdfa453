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


class QueueProtocol(asyncio.Protocol):
    """An asyncio protocol that queues received chunks, for transports built on asyncio's."""

    def __init__(self) -> None:
        self.chunks: asyncio.Queue[bytes | BaseException] = asyncio.Queue()
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.chunks.put_nowait(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.chunks.put_nowait(LinkLost(f"link closed{f': {exc}' if exc else ''}"))

    async def next_chunk(self) -> bytes:
        item = await self.chunks.get()
        if isinstance(item, BaseException):
            self.chunks.put_nowait(item)  # every later read fails the same way
            raise item
        return item
