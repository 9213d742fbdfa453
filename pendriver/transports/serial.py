"""Serial ports and anything pyserial names by URL: ``/dev/ttyUSB0``, ``socket://host:port``.

Opened through pyserial-asyncio-fast, which calls ``serial.serial_for_url`` (so every pyserial
URL users already know works) and special-cases ``socket://`` onto asyncio's own sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import urllib.parse
from typing import Any

import serial
import serial_asyncio_fast

from ..errors import LinkLost, PenConnectionError, WrongPen
from .base import QueueProtocol, Transport

DEFAULT_BAUDRATE = 115200

PSEUDO_TERMINALS = "/dev/pts/"
"""Where Linux names pseudo-terminals; a number there is reused as soon as it is free."""


class SerialTransport(Transport):
    def __init__(self, url: str, baudrate: int = DEFAULT_BAUDRATE) -> None:
        self.url = url
        self.baudrate = baudrate
        self._protocol = QueueProtocol()
        self._transport: asyncio.WriteTransport | None = None
        self._pty_born: int | None = None
        """When the pseudo-terminal first opened was created (its inode's change time)."""

    async def open(self) -> None:
        """Open the port; may be called again after a loss (a reconnect)."""
        self._check_same_pseudo_terminal()
        self._protocol = QueueProtocol()
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await serial_asyncio_fast.create_serial_connection(
                loop, lambda: self._protocol, self.url, baudrate=self.baudrate
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            raise PenConnectionError(_explain_open_error(self.url, exc)) from None
        self._transport = transport

    def _check_same_pseudo_terminal(self) -> None:
        """Reopen ``/dev/pts/N`` only while it is the pseudo-terminal first opened.

        The pen's side of a pseudo-terminal is a process (pen-sim, a bridge); when it ends,
        the number is free, and the next terminal window or server gets it. Writing protocol
        frames into someone's terminal is never right, so a reopen checks the node's creation
        time (its ctime, set when the pseudo-terminal is made) and refuses a newer one
        *before* opening it. A stable name (``pen-sim --pty-link PATH``, a symlink) is not
        checked here: following it to a restarted server is its purpose, and the driver's
        identity check after HELLO still refuses a different pen.
        """
        if not self.url.startswith(PSEUDO_TERMINALS):
            return
        try:
            born = os.stat(self.url).st_ctime_ns
        except OSError:
            return  # gone: opening reports it in the usual words
        if self._pty_born is None:
            self._pty_born = born
        elif born != self._pty_born:
            raise WrongPen(
                f"{self.url} is now another pseudo-terminal (the pen's was closed and its "
                "number reused): not reopened; for a name that follows a restarted pen-sim "
                "use pen-sim --pty-link PATH"
            )

    async def read(self) -> bytes:
        return await self._protocol.next_chunk()

    async def write(self, data: bytes) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            raise LinkLost(f"{self.url} is closed")
        transport.write(data)

    async def close(self) -> None:
        transport, self._transport = self._transport, None
        if transport is not None:
            with contextlib.suppress(Exception):
                transport.close()
            await asyncio.sleep(0)


_NOT_A_PORT_HINT = "a serial device is e.g. /dev/ttyUSB0; list ports with: pen scan"


def _explain_open_error(url: str, exc: BaseException) -> str:
    """One line for a user who named the wrong thing: what is wrong with ``url``, in words,
    and what to do, instead of pyserial's errno tuple."""
    text = str(exc)
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "socket":
        if isinstance(exc, ConnectionRefusedError):
            return f"cannot connect to {url}: nothing is listening there (is pen-sim running?)"
        return f"cannot connect to {url}: {getattr(exc, 'strerror', None) or text}"
    if "No such file" in text or "[Errno 2]" in text:
        return (
            f"cannot open {url}: no such port (list ports with: python -m serial.tools.list_ports)"
        )
    if _has_errno(exc, text, errno.ENOTTY):
        # pyserial opened it, then the terminal ioctls failed: a file, /dev/null, a pipe...
        return f"cannot open {url}: it is not a serial port ({_NOT_A_PORT_HINT})"
    if _has_errno(exc, text, errno.EISDIR):
        return f"cannot open {url}: it is a directory, not a serial port ({_NOT_A_PORT_HINT})"
    if "Permission denied" in text or "[Errno 13]" in text:
        return f"cannot open {url}: permission denied (add yourself to the dialout group)"
    if "protocol" in text and "not known" in text:
        return f"cannot open {url}: unknown URL scheme (use a device path, socket://, or sim://)"
    return f"cannot open {url}: {text}"


def _has_errno(exc: BaseException, text: str, code: int) -> bool:
    """Whether ``exc`` is the OS error ``code``: pyserial often keeps only the text, as
    ``[Errno 21] ...`` or ``Could not configure port: (25, 'Inappropriate ioctl ...')``."""
    return (
        getattr(exc, "errno", None) == code
        or f"[Errno {code}]" in text
        or f"({code}, " in text
        or os.strerror(code) in text
    )


def serial_options(query: str) -> dict[str, Any]:
    """``?baudrate=N`` style options of a serial URL (only baudrate is understood)."""
    options: dict[str, Any] = {}
    for key, value in urllib.parse.parse_qsl(query):
        if key == "baudrate":
            options["baudrate"] = int(value)
    return options
