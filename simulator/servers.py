"""Serving a simulated pen where a real one would be: a pseudo-terminal or a TCP port.

A pseudo-terminal looks to the driver exactly like a USB serial port (``/dev/pts/N``); a TCP
port is reached with pyserial's ``socket://host:port`` URL. Either way one host at a time is
attached, as on a real serial line, and the pen keeps running between hosts, so a host that
vanishes mid-pass finds the watchdog has stopped the motor.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import tty
from collections.abc import Callable

from .service import PenService

OUTPUT_LIMIT = 256 * 1024
"""Bytes a pty may hold for a host that is not reading; beyond it output is dropped, as a
UART without flow control would."""


class PtyServer:
    """The pen behind a pseudo-terminal. ``path`` is the device the host opens."""

    def __init__(self, service: PenService) -> None:
        self.service = service
        self._master, self._slave = os.openpty()
        # Raw at once: a new pty echoes and translates newlines until pyserial configures it.
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.path = os.ttyname(self._slave)
        self._pending = bytearray()
        self.dropped_bytes = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._master, self._on_readable)
        self.service.attach(self._write)
        self.service.start()

    def _on_readable(self) -> None:
        try:
            data = os.read(self._master, 65536)
        except OSError as exc:
            if exc.errno in (errno.EIO, errno.EAGAIN):
                return  # EIO: no host has the port open (we keep the slave open, so rare)
            raise
        if data:
            self.service.feed(data)

    def _write(self, data: bytes) -> None:
        if self._pending:
            self._queue(data)
            return
        try:
            written = os.write(self._master, data)
        except BlockingIOError:
            written = 0
        except OSError:
            return
        if written < len(data):
            self._queue(data[written:])

    def _queue(self, data: bytes) -> None:
        room = OUTPUT_LIMIT - len(self._pending)
        if room < len(data):
            self.dropped_bytes += len(data) - max(room, 0)
            data = data[: max(room, 0)]
        if not self._pending and self._loop is not None:
            self._loop.add_writer(self._master, self._on_writable)
        self._pending += data

    def _on_writable(self) -> None:
        try:
            written = os.write(self._master, self._pending)
        except BlockingIOError:
            return
        except OSError:
            written = len(self._pending)
        del self._pending[:written]
        if not self._pending and self._loop is not None:
            self._loop.remove_writer(self._master)

    async def close(self) -> None:
        await self.service.stop()
        if self._loop is not None:
            self._loop.remove_reader(self._master)
            if self._pending:
                self._loop.remove_writer(self._master)
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)


class TcpServer:
    """The pen behind a TCP port (``socket://host:port``); a second host is turned away."""

    def __init__(
        self, service: PenService, host: str, port: int, log: Callable[[str], None] | None = None
    ) -> None:
        self.service = service
        self.host = host
        self.port = port
        self._log = log or (lambda _line: None)
        self._server: asyncio.Server | None = None
        self._writer: asyncio.StreamWriter | None = None

    @property
    def url(self) -> str:
        return f"socket://{self.host}:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._on_client, self.host, self.port)
        sock = self._server.sockets[0]
        self.port = sock.getsockname()[1]
        self.service.start()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        if self._writer is not None:
            self._log(f"refused a second host from {peer}: the pen already has one")
            writer.close()
            return
        self._writer = writer
        self._log(f"host connected from {peer}")
        self.service.attach(writer.write)
        try:
            while data := await reader.read(65536):
                self.service.feed(data)
        except ConnectionError:
            pass
        finally:
            self.service.detach()
            self._writer = None
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            self._log(f"host {peer} disconnected")

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        await self.service.stop()
