"""Serving a simulated pen where a real one would be: a pseudo-terminal or a TCP port.

A pseudo-terminal looks to the driver exactly like a USB serial port (``/dev/pts/N``); a TCP
port is reached with pyserial's ``socket://host:port`` URL. Either way one host at a time is
attached, as on a real serial line, and the pen keeps running between hosts, so a host that
vanishes mid-pass finds the watchdog has stopped the motor.

A server stays in control of a misbehaving host, because pen-sim must keep answering Ctrl-C
and serving the next host whatever the current one does:

- its output to the host is bounded (:data:`OUTPUT_LIMIT`, and :data:`KERNEL_SEND_BUFFER` in
  the kernel): a TCP host that stops reading is
  dropped, a pty drops the pen's output, as a UART without flow control would;
- a TCP host that sends nothing for the idle limit (:data:`DEFAULT_IDLE_LIMIT_S`) is dropped,
  so a frozen host cannot hold the only slot for ever;
- input is read in small chunks (:data:`READ_CHUNK`), so a host flooding the pen cannot keep
  the loop from its timers (the pen's watchdog, telemetry) or from a signal for long;
- a host turned away because the slot is taken is told so in one line of text;
- closing (pen-sim's SIGTERM/SIGINT) with a host attached is clean: the host is cut off, and
  its connection handler is let finish before the loop ends, never left to be cancelled by
  ``asyncio.run`` (on Python 3.11 the streams' done-callback logs a cancelled handler as an
  "Exception in callback" traceback).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import tty
from collections.abc import Callable
from pathlib import Path

from .ptylink import PtyLinkRefused as PtyLinkRefused  # its home before ptylink existed
from .ptylink import make_pty_link, remove_pty_link
from .service import PenService

Log = Callable[[str], None]

OUTPUT_LIMIT = 256 * 1024
"""Bytes the server holds for a host that is not reading (beyond what the kernel's socket or
pty buffer holds). 256 kB is over 5 s of the densest output (1 kHz telemetry) and far more
than any burst of answers, so only a host that has stopped reading reaches it."""

DEFAULT_IDLE_LIMIT_S = 10.0
"""A TCP host that sends nothing for this long is dropped. Ten watchdog periods of the
profiles (1 s): a live driver sends a heartbeat every 0.25 s, and any motor such a host
started stopped by the watchdog nine seconds earlier."""

KERNEL_SEND_BUFFER = 64 * 1024
"""The socket send buffer asked of the kernel for a host (Linux doubles it): without it the
kernel grows its own buffer to megabytes for a host that does not read, before
:data:`OUTPUT_LIMIT` is ever reached. 64 kB is over a second of 1 kHz telemetry in flight."""

READ_CHUNK = 4096
"""Bytes taken from the host per loop turn: small enough that one turn of the firmware on a
flood (thousands of tiny frames) stays short, so timers and signals are never held up long."""

CLOSE_WAIT_S = 1.0
"""How long :meth:`TcpServer.close` waits for connection handlers to finish once their
hosts are cut off (they finish on the next loop turn; this only bounds a pathological case)."""

REFUSAL_LINGER_S = 2.0
"""How long a refused host's own bytes are read and discarded after its refusal line: closing
with its HELLO unread would reset the connection and could destroy the line before it is read."""


def _describe(peer: object) -> str:
    """``HOST:PORT`` of a socket peer (an IPv6 peer is a 4-tuple)."""
    if isinstance(peer, tuple) and len(peer) >= 2:
        host, port = peer[0], peer[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(peer)


class PtyServer:
    """The pen behind a pseudo-terminal. ``path`` is the device the host opens.

    ``link``: also make a symbolic link there to ``path`` (a stable name for scripts, since
    the pty's number changes every run), removed again by :meth:`close`. An existing file, or
    a link that still points at a device, is never replaced (:class:`PtyLinkRefused`); a
    dangling link, what a pen-sim that was killed leaves, is.
    """

    def __init__(
        self,
        service: PenService,
        *,
        link: str | os.PathLike[str] | None = None,
        log: Log | None = None,
        output_limit: int = OUTPUT_LIMIT,
    ) -> None:
        self.service = service
        self.link = Path(link) if link is not None else None
        self.output_limit = output_limit
        self._log = log or (lambda _line: None)
        self._master, self._slave = os.openpty()
        # Raw at once: a new pty echoes and translates newlines until pyserial configures it.
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.path = os.ttyname(self._slave)
        self._pending = bytearray()
        self.dropped_bytes = 0
        """Bytes of the pen's output dropped because nobody read them."""
        self.peak_buffered_bytes = 0
        """The most output ever held here for the host: never above ``output_limit``."""
        self._overflowing = False
        self._linked = False
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def buffered_bytes(self) -> int:
        """Output held here (not yet taken by the kernel) for the host."""
        return len(self._pending)

    async def start(self) -> None:
        if self.link is not None:
            make_pty_link(self.link, self.path, log=self._log)
            self._linked = True
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._master, self._on_readable)
        self.service.attach(self._write)
        self.service.start()

    def _remove_link(self) -> None:
        link = self.link
        if link is None or not self._linked:
            return
        self._linked = False
        remove_pty_link(link, self.path)

    def _on_readable(self) -> None:
        try:
            data = os.read(self._master, READ_CHUNK)
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
        room = self.output_limit - len(self._pending)
        if room < len(data):
            self.dropped_bytes += len(data) - max(room, 0)
            data = data[: max(room, 0)]
            if not self._overflowing:
                self._overflowing = True
                self._log(
                    f"nobody is reading {self.path}: {len(self._pending) + len(data)} bytes "
                    "unsent; the pen's output is dropped until a host reads it"
                )
        if not self._pending and self._loop is not None and data:
            self._loop.add_writer(self._master, self._on_writable)
        self._pending += data
        self.peak_buffered_bytes = max(self.peak_buffered_bytes, len(self._pending))

    def _on_writable(self) -> None:
        try:
            written = os.write(self._master, self._pending)
        except BlockingIOError:
            return
        except OSError:
            written = len(self._pending)
        del self._pending[:written]
        if not self._pending:
            self._overflowing = False
            if self._loop is not None:
                self._loop.remove_writer(self._master)

    async def close(self) -> None:
        self._remove_link()
        await self.service.stop()
        if self._loop is not None:
            self._loop.remove_reader(self._master)
            if self._pending:
                self._loop.remove_writer(self._master)
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)


class TcpServer:
    """The pen behind a TCP port (``socket://host:port``); a second host is turned away.

    ``output_limit``: bytes held for a host that does not read before it is dropped.
    ``idle_limit_s``: seconds without a byte from the host before it is dropped (``None`` or
    0: never). Both free the slot for the next host, and each drop is one log line.
    """

    def __init__(
        self,
        service: PenService,
        host: str,
        port: int,
        log: Log | None = None,
        *,
        output_limit: int = OUTPUT_LIMIT,
        idle_limit_s: float | None = DEFAULT_IDLE_LIMIT_S,
    ) -> None:
        self.service = service
        self.host = host
        self.port = port
        self.output_limit = output_limit
        self.idle_limit_s = idle_limit_s or None
        self._log = log or (lambda _line: None)
        self._server: asyncio.Server | None = None
        self._transport: asyncio.WriteTransport | None = None
        self._peer = ""
        self._drop_reason: str | None = None
        self._refusals: set[asyncio.Task[None]] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        """Every connection handler still running (the host's and refusals)."""
        self.peak_buffered_bytes = 0
        """The most output ever held here for a host: never above ``output_limit``."""
        self.hosts_dropped = 0
        """Hosts this server disconnected (not reading, or idle too long)."""

    @property
    def url(self) -> str:
        return f"socket://{self.host}:{self.port}"

    @property
    def buffered_bytes(self) -> int:
        """Output held here (not yet taken by the kernel) for the current host."""
        transport = self._transport
        return transport.get_write_buffer_size() if transport is not None else 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._on_client, self.host, self.port)
        sock = self._server.sockets[0]
        self.port = sock.getsockname()[1]
        self.service.start()

    def _send(self, data: bytes) -> None:
        """The pen's output to the host, dropping the host rather than holding too much."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        unsent = transport.get_write_buffer_size()
        if unsent + len(data) > self.output_limit:
            self._drop(f"stopped reading: {unsent} bytes unsent")
            return
        transport.write(data)
        self.peak_buffered_bytes = max(self.peak_buffered_bytes, transport.get_write_buffer_size())

    def _drop(self, reason: str) -> None:
        """Disconnect the current host at once (its unsent output is discarded)."""
        if self._transport is None or self._drop_reason is not None:
            return
        self._drop_reason = reason
        self.hosts_dropped += 1
        self._log(f"host {self._peer} {reason}; link dropped")
        self.service.detach()
        self._transport.abort()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)
        # Only a closing server or loop cancels a handler (close() cancels refusals, and cuts
        # the host off and waits, so for it this is a last resort); the cleanup runs in
        # _serve_client. Ended quietly: asyncio's streams (3.11) log a cancelled handler as
        # an "Exception in callback" traceback.
        with contextlib.suppress(asyncio.CancelledError):
            await self._serve_client(reader, writer, task)

    async def _serve_client(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        task: asyncio.Task[None] | None,
    ) -> None:
        peer = _describe(writer.get_extra_info("peername"))
        if self._transport is not None:
            if task is not None:
                self._refusals.add(task)
                task.add_done_callback(self._refusals.discard)
            await self._refuse(reader, writer, peer)
            return
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, KERNEL_SEND_BUFFER)
        self._transport = writer.transport
        self._peer = peer
        self._drop_reason = None
        self._log(f"host connected from {peer}")
        self.service.attach(self._send)
        idle = self.idle_limit_s
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(None) as deadline:
                while True:
                    if idle is not None:
                        deadline.reschedule(loop.time() + idle)
                    data = await reader.read(READ_CHUNK)
                    if not data:
                        break
                    self.service.feed(data)
        except TimeoutError:
            self._drop(f"sent nothing for {idle:g} s (--idle-limit)")
        except ConnectionError:
            pass
        finally:
            if self._drop_reason is None:
                self.service.detach()
            self._transport = None
            writer.transport.abort()  # whatever the host did not read is of no use now
            if self._drop_reason is None:  # a dropped host had its line in _drop
                self._log(f"host {peer} disconnected")

    async def _refuse(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str
    ) -> None:
        """Tell a second host in one line of text why it is turned away, then close.

        Text on a binary link is safe: it holds no frame delimiter (0x00), so a driver's
        decoder never takes it for a frame, while a person with ``nc`` reads it as is.
        """
        self._log(f"refused a host from {peer}: the pen already has one (from {self._peer})")
        writer.write(
            f"pen-sim: this pen already has a host (from {self._peer}); "
            "try again when it disconnects\n".encode()
        )
        try:
            with contextlib.suppress(OSError):  # TimeoutError and ConnectionError included
                writer.write_eof()
                async with asyncio.timeout(REFUSAL_LINGER_S):
                    while await reader.read(READ_CHUNK):
                        pass
        finally:
            writer.transport.abort()

    async def close(self) -> None:
        if self._transport is not None:
            self._transport.abort()  # close() would wait for a host that never reads
        for task in list(self._refusals):
            task.cancel()
        # The aborted host's handler sees its end of stream on the next loop turn and logs
        # the disconnection; let it (and the refusals) finish rather than be cancelled later.
        if self._handlers:
            await asyncio.wait(list(self._handlers), timeout=CLOSE_WAIT_S)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        await self.service.stop()
